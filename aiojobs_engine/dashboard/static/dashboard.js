// aiojobs dashboard: the little the pages do in the browser. Everything works without it;
// it adds confirmation prompts, times in the viewer's time zone, ticking every job of a page,
// and live refresh of the parts of a page marked data-live (fetched and swapped in place).
// Served as a file of its own: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  var root = document.documentElement;

  // -- confirmation -------------------------------------------------------------------------

  // A form, or the button that submits it, carrying data-confirm="question" asks first. Once
  // answered yes, the form says so (confirm=yes), so the server need not ask again.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    var question = (button && button.getAttribute("data-confirm")) ||
      (form && form.getAttribute && form.getAttribute("data-confirm"));
    if (!question) { return; }
    if (!window.confirm(question)) {
      event.preventDefault();
      return;
    }
    var yes = document.createElement("input");
    yes.type = "hidden";
    yes.name = "confirm";
    yes.value = "yes";
    form.appendChild(yes);
  });

  // -- times --------------------------------------------------------------------------------

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function zoneName(at) {
    try {
      var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(at);
      for (var i = 0; i < parts.length; i++) {
        if (parts[i].type === "timeZoneName") { return parts[i].value; }
      }
    } catch (e) { /* an old browser: the time without its zone's name */ }
    return "";
  }

  function localText(at) {
    var zone = zoneName(at);
    return at.getFullYear() + "-" + pad(at.getMonth() + 1) + "-" + pad(at.getDate()) + " " +
      pad(at.getHours()) + ":" + pad(at.getMinutes()) + ":" + pad(at.getSeconds()) + (zone ? " " + zone : "");
  }

  // The page writes UTC ("2024-05-01 12:00:03 UTC", kept as the title); show the viewer's
  // own time instead, and add it to the title of relative times ("3 min ago").
  function localTimes(within) {
    var times = within.querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < times.length; i++) {
      var time = times[i];
      var at = new Date(time.getAttribute("datetime"));
      if (isNaN(at.getTime())) { continue; }
      if (time.classList.contains("at")) {
        time.textContent = localText(at);
      } else {
        time.title = localText(at) + " (" + time.title + ")";
      }
      time.setAttribute("data-local", "");
    }
  }

  // -- selection ----------------------------------------------------------------------------

  function boxes() { return document.querySelectorAll('input[name="id"][form="selection"]'); }

  function selectedCount() {
    return document.querySelectorAll('input[name="id"][form="selection"]:checked').length;
  }

  function showSelection() {
    var count = selectedCount();
    var label = document.querySelector(".selection-count");
    if (label) {
      label.textContent = count ? count + " selected:" : "Tick jobs to act on several at once:";
    }
    var buttons = document.querySelectorAll("#selection button[name=action]");
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = count === 0; }
    var all = document.querySelector("input.select-all");
    if (all) {
      var total = boxes().length;
      all.checked = total > 0 && count === total;
      all.indeterminate = count > 0 && count < total;
    }
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.classList && target.classList.contains("select-all")) {
      var all = boxes();
      for (var i = 0; i < all.length; i++) { all[i].checked = target.checked; }
    }
    if (target.name === "id" || (target.classList && target.classList.contains("select-all"))) {
      showSelection();
    }
  });

  // What the script adds to a page, or to a part of one fetched again: idempotent.
  function enhance(within) {
    localTimes(within);
    var all = within.querySelectorAll("input.select-all");
    for (var i = 0; i < all.length; i++) { all[i].hidden = false; }
  }

  // -- live refresh -------------------------------------------------------------------------

  // Every few seconds, fetch this page again and swap in the parts marked data-live that
  // changed, unless refresh is turned off, the tab is hidden, a job is ticked or a field has
  // focus: never throw away what someone is choosing or typing. The state is on <html> (data-live,
  // data-live-polls, data-live-skips) for people and tests to see.
  var REFRESH_KEY = "aiojobs-dashboard-refresh";

  function storedRefresh() {
    try { return window.localStorage.getItem(REFRESH_KEY) !== "off"; } catch (e) { return true; }
  }

  function storeRefresh(on) {
    try { window.localStorage.setItem(REFRESH_KEY, on ? "on" : "off"); } catch (e) { /* private mode */ }
  }

  function pauseReason(box) {
    if (!box.checked) { return "off"; }
    if (document.hidden) { return "hidden"; }
    if (selectedCount() > 0) { return "selection"; }
    var active = document.activeElement;
    if (active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName) && active.type !== "checkbox") {
      return "typing";
    }
    return "";
  }

  function count(name) {
    var n = Number(root.getAttribute(name) || "0") + 1;
    root.setAttribute(name, String(n));
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    enhance(fresh);
    var parts = document.querySelectorAll("[data-live]");
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i];
      var next = fresh.querySelector('[data-live="' + part.getAttribute("data-live") + '"]');
      if (!next || next.innerHTML === part.innerHTML) { continue; }
      var scrolled = part.querySelectorAll(".scroll");
      var offsets = [];
      for (var j = 0; j < scrolled.length; j++) { offsets.push(scrolled[j].scrollLeft); }
      part.innerHTML = next.innerHTML;
      var again = part.querySelectorAll(".scroll");
      for (var k = 0; k < again.length && k < offsets.length; k++) { again[k].scrollLeft = offsets[k]; }
    }
    showSelection();
  }

  function startRefresh() {
    var period = Number(document.body.getAttribute("data-refresh") || "0");
    var box = document.getElementById("auto-refresh");
    if (!box || !period || !document.querySelector("[data-live]")) { return; }
    box.parentNode.hidden = false;
    box.checked = storedRefresh();
    var timer = null;
    var fetching = false;

    function schedule() {
      window.clearTimeout(timer);
      timer = window.setTimeout(poll, period);
    }

    function poll() {
      var reason = pauseReason(box);
      root.setAttribute("data-live", reason ? "paused-" + reason : "on");
      if (reason) {
        count("data-live-skips");
        schedule();
        return;
      }
      if (fetching) { return; }  // the one under way schedules the next
      fetching = true;
      window.fetch(window.location.href, { credentials: "same-origin", cache: "no-store",
                                           headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok && !response.redirected ? response.text() : null; })
        .then(function (html) {
          if (html !== null && !pauseReason(box)) { swap(html); }
        })
        .catch(function () { /* the server is away: try again next time */ })
        .then(function () {
          fetching = false;
          count("data-live-polls");
          schedule();
        });
    }

    box.addEventListener("change", function () {
      storeRefresh(box.checked);
      if (box.checked) { poll(); } else { root.setAttribute("data-live", "paused-off"); }
    });
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { poll(); }  // back on the tab: bring it up to date at once
    });
    root.setAttribute("data-live", box.checked ? "on" : "paused-off");
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
    showSelection();
    startRefresh();
  });
})();
