// Line charts for tables marked data-chart="line": the first column is the time axis,
// every other column a series. Bar tables are drawn by console.js. The tables stay on
// the page as the accessible source of the same numbers.
(function () {
  "use strict";

  function drawLines(table) {
    var holder = table.closest("figure").querySelector(".chart");
    if (!holder || typeof Chartist === "undefined") { return; }
    var names = [];
    table.querySelectorAll("thead th").forEach(function (th, i) {
      if (i > 0) { names.push(th.textContent.trim()); }
    });
    var labels = [];
    var series = names.map(function () { return []; });
    var stamps = [];
    table.querySelectorAll("tbody tr").forEach(function (row) {
      stamps.push(row.querySelector("th").textContent.trim());
      row.querySelectorAll("td").forEach(function (cell, i) {
        series[i].push(Number(cell.getAttribute("data-value")));
      });
    });
    // "YYYY-MM-DD HH:MM": within one day the time says it, across days the date does.
    var oneDay = stamps.length > 0 && stamps[0].slice(0, 10) === stamps[stamps.length - 1].slice(0, 10);
    stamps.forEach(function (stamp) { labels.push(oneDay ? stamp.slice(11) : stamp.slice(5, 10)); });
    var every = Math.max(1, Math.ceil(labels.length / 6));
    new Chartist.LineChart(holder, { labels: labels, series: series }, {
      axisY: { onlyInteger: true, low: 0 },
      axisX: { labelInterpolationFnc: function (v, i) { return i % every === 0 ? v : null; } },
      showPoint: false,
      lineSmooth: Chartist.Interpolation.step(),  // counts change in steps, not curves
      chartPadding: { top: 10, right: 10, bottom: 0, left: 0 },
    });
    holder.setAttribute("data-drawn", String(series.length));
    var legend = document.createElement("p");
    legend.className = "legend";
    names.forEach(function (name, i) {
      var item = document.createElement("span");
      item.className = "legend-item series-" + String.fromCharCode(97 + i);
      item.textContent = name;
      legend.appendChild(item);
    });
    holder.after(legend);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll('table[data-chart="line"]').forEach(drawLines);
  });
})();
