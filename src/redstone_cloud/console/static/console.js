// Progressive enhancement only: every page works without this file.
// A table marked data-chart="bar" gets a Chartist bar chart of its numbers drawn into
// the .chart element before it; the table stays as the accessible source of truth.
(function () {
  "use strict";

  function drawBars(table) {
    var holder = (table.closest("figure") || table.parentElement).querySelector(".chart");
    if (!holder || typeof Chartist === "undefined") { return; }
    var labels = [];
    var values = [];
    table.querySelectorAll("tbody tr").forEach(function (row) {
      var head = row.querySelector("th");
      var cell = row.querySelector("td[data-value]");
      if (head && cell) {
        labels.push(head.textContent.trim());
        values.push(Number(cell.getAttribute("data-value")));
      }
    });
    new Chartist.BarChart(holder, { labels: labels, series: [values] }, {
      axisY: { onlyInteger: true },
      chartPadding: { top: 10, right: 10, bottom: 0, left: 0 },
    });
    holder.setAttribute("data-drawn", String(values.length));
  }

  function drawAll(root) {
    root.querySelectorAll('table[data-chart="bar"]').forEach(drawBars);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (event) { drawAll(event.target); });
})();
