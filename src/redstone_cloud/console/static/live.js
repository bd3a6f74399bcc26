// Live views: an element with data-live="URL" takes each message of that Server-Sent
// Events stream named by data-live-event ("progress" unless given): its content is
// replaced, or with data-live-mode="prepend" the message is added at its top (the log
// tail). Without this file (or without EventSource) a page shows what it loaded with.
(function () {
  "use strict";

  function watch(holder) {
    if (typeof EventSource === "undefined") { return; }
    var note = document.querySelector(".live-status");
    var source = new EventSource(holder.getAttribute("data-live"));
    var kind = holder.getAttribute("data-live-event") || "progress";
    var prepend = holder.getAttribute("data-live-mode") === "prepend";
    var updates = 0;
    source.addEventListener(kind, function (event) {
      // Server-rendered and escaped; the CSP forbids inline script besides.
      if (prepend) {
        holder.insertAdjacentHTML("afterbegin", event.data);
      } else {
        holder.innerHTML = event.data;
      }
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
