// aiojobs dashboard: the little the pages do in the browser. Everything works without it;
// it only adds confirmation prompts, local times on hover and an optional auto-refresh.
// Served as a file of its own: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  // Forms that act on a job ask first when they carry data-confirm="question".
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // Times are written in UTC; show the browser's local time on hover.
  function localTimes() {
    var times = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var at = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(at.getTime())) {
        times[i].title = times[i].title + " — " + at.toLocaleString() + " local";
      }
    }
  }

  // Auto-refresh every few seconds, remembered per browser; paused while a field has focus
  // or the tab is hidden, so it never throws away what someone is typing.
  var REFRESH_KEY = "aiojobs-dashboard-refresh";
  var REFRESH_MS = 5000;

  function storedRefresh() {
    try { return window.localStorage.getItem(REFRESH_KEY) === "on"; } catch (e) { return false; }
  }

  function storeRefresh(on) {
    try { window.localStorage.setItem(REFRESH_KEY, on ? "on" : "off"); } catch (e) { /* private mode */ }
  }

  function busy() {
    var active = document.activeElement;
    return document.hidden || (active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName) && active.id !== "auto-refresh");
  }

  function startRefresh() {
    var box = document.getElementById("auto-refresh");
    if (!box) { return; }
    box.parentNode.hidden = false;
    box.checked = storedRefresh();
    box.addEventListener("change", function () { storeRefresh(box.checked); });
    window.setInterval(function () {
      if (box.checked && !busy()) { window.location.reload(); }
    }, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes();
    startRefresh();
  });
})();
