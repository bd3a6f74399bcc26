// Live campaign progress: an element with data-live="URL" is replaced by each
// "progress" message of that Server-Sent Events stream. Without this file (or
// without EventSource) the page still shows the counts as of its loading.
(function () {
  "use strict";

  function watch(holder) {
    if (typeof EventSource === "undefined") { return; }
    var note = document.querySelector(".live-status");
    var source = new EventSource(holder.getAttribute("data-live"));
    var updates = 0;
    source.addEventListener("progress", function (event) {
      holder.innerHTML = event.data; // server-rendered and escaped; CSP forbids inline script
      updates += 1;
      holder.setAttribute("data-updates", String(updates));
      if (note) { note.textContent = "Live: updated " + new Date().toLocaleTimeString() + "."; }
    });
    source.addEventListener("end", function (event) {
      source.close();
      if (note) { note.textContent = event.data; }
    });
    source.addEventListener("error", function () {
      if (note && source.readyState !== EventSource.CLOSED) {
        note.textContent = "Connection lost; reconnecting…";
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(watch);
  });
})();
