// BackApp's page script: local times, live progress (server-sent events) and the config form.
// Every page works without it; it only makes them nicer. No inline scripts: the CSP forbids them.
(function () {
  "use strict";

  var SYMBOLS = { queued: "◷", running: "▶", completed: "✓", failed: "✕", cancelled: "■", skipped: "↷" };
  var localZone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";

  // Elements matching a selector in (and including) a freshly loaded root.
  function within(root, selector) {
    var found = root.querySelectorAll ? Array.prototype.slice.call(root.querySelectorAll(selector)) : [];
    if (root.matches && root.matches(selector)) found.unshift(root);
    return found;
  }

  // -- times: the server writes UTC (or the schedule's zone); show them in the viewer's zone --
  function localiseTimes(root) {
    within(root, "time[data-local]").forEach(function (el) {
      var moment = new Date(el.getAttribute("datetime"));
      if (isNaN(moment.getTime())) return;
      var scheduleZone = el.getAttribute("data-tz");
      var zone = scheduleZone || localZone;
      var options = {
        weekday: "short", year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", timeZone: zone
      };
      // A schedule's own zone is named in full ("Europe/Paris"); the viewer's, briefly ("CET").
      if (!scheduleZone) options.timeZoneName = "short";
      try {
        el.textContent = moment.toLocaleString(undefined, options) + (scheduleZone ? " " + scheduleZone : "");
        el.title = zone === localZone ? "Your time zone: " + zone : "Time zone: " + zone;
      } catch (e) { /* an unknown zone: keep the server's text */ }
    });
  }

  function hideSameZone(root) {
    // "(your time: …)" says nothing new when the schedule runs in the viewer's own zone.
    within(root, "[data-your-time]").forEach(function (el) {
      el.hidden = el.getAttribute("data-your-time") === localZone;
    });
  }

  // -- live progress -------------------------------------------------------------------------
  function setBadge(holder, status) {
    var badge = document.createElement("span");
    badge.className = "badge badge-" + status;
    badge.setAttribute("data-status", status);
    var symbol = document.createElement("span");
    symbol.setAttribute("aria-hidden", "true");
    symbol.textContent = SYMBOLS[status] || "•";
    badge.appendChild(symbol);
    badge.appendChild(document.createTextNode(" " + status));
    holder.replaceChildren(badge);
  }

  function applyProgress(box, data) {
    box.setAttribute("data-status", data.status);
    var runId = box.getAttribute("data-run");
    if (runId) {
      document.querySelectorAll("[data-badge-of='" + runId + "']").forEach(function (holder) {
        setBadge(holder, data.status);
      });
    }
    box.querySelectorAll("[data-field]").forEach(function (el) {
      var key = el.getAttribute("data-field");
      if (key === "bar") {
        if (data.percent === null || data.percent === undefined) el.removeAttribute("value");
        else el.value = data.percent;
        el.textContent = data.percentText;
      } else if (key === "badge") {
        setBadge(el, data.status);
      } else if (key === "cancel") {
        var button = el.querySelector("button");
        if (button) button.disabled = Boolean(data.done) || data.phase === "cancelling…";
      } else if (key === "error") {
        el.textContent = data.error || "";
        el.hidden = !(data.done && data.error);
      } else if (Object.prototype.hasOwnProperty.call(data, key)) {
        el.textContent = data[key];
      }
    });
  }

  function refreshAfterRun(box) {
    var url = box.getAttribute("data-refresh-url");
    var target = box.getAttribute("data-refresh-target");
    if (!url || !target || !window.htmx) return;
    var swap = target === "#dashboard-body" ? "outerHTML" : "innerHTML";
    // Let people see "completed" on the bar for a moment before the page around it updates.
    window.setTimeout(function () {
      if (document.querySelector(target)) {
        window.htmx.ajax("GET", url, { target: target, swap: swap, headers: { "X-Refresh": "run-ended" } });
      }
    }, 2500);
  }

  function watchProgress(root) {
    within(root, "[data-progress-src]").forEach(function (box) {
      if (box._backappSource || typeof EventSource === "undefined") return;
      var source = new EventSource(box.getAttribute("data-progress-src"));
      box._backappSource = source;
      source.addEventListener("progress", function (event) {
        applyProgress(box, JSON.parse(event.data));
      });
      source.addEventListener("done", function (event) {
        source.close();
        box._backappSource = null;
        box.setAttribute("data-done", "true");
        applyProgress(box, JSON.parse(event.data));
        refreshAfterRun(box);
      });
    });
  }

  function closeStreams(el) {
    within(el, "[data-progress-src]").forEach(function (box) {
      if (box._backappSource) { box._backappSource.close(); box._backappSource = null; }
    });
  }

  // -- the configuration form ----------------------------------------------------------------
  function renumberSources(form) {
    var rows = form.querySelectorAll("[data-source-row]");
    rows.forEach(function (row, i) {
      var number = row.querySelector("[data-source-number]");
      if (number) number.textContent = String(i + 1);
    });
  }

  function addSource(form) {
    var holder = form.querySelector("#source-rows");
    var template = form.querySelector("#source-row-template");
    var index = Number(holder.getAttribute("data-next-index") || "0");
    holder.setAttribute("data-next-index", String(index + 1));
    holder.insertAdjacentHTML("beforeend", template.innerHTML.split("__INDEX__").join(String(index)));
    renumberSources(form);
    var added = holder.lastElementChild && holder.lastElementChild.querySelector("input");
    if (added) added.focus();
  }

  function removeSource(form, button) {
    var row = button.closest("[data-source-row]");
    if (!row) return;
    var rows = Array.prototype.slice.call(form.querySelectorAll("[data-source-row]"));
    var position = rows.indexOf(row);
    row.remove();
    if (rows.length === 1) addSource(form);
    renumberSources(form);
    var remaining = form.querySelectorAll("[data-source-row] input[type=text]");
    var next = remaining[Math.max(0, Math.min(position, remaining.length - 1))];
    if (next) next.focus();
  }

  function showDestination(form) {
    var checked = form.querySelector("input[name='dest-type']:checked");
    var type = checked ? checked.value : "s3";
    form.querySelectorAll(".dest-fields[data-dest]").forEach(function (group) {
      group.hidden = group.getAttribute("data-dest") !== type;
    });
  }

  function setUpConfigForm(root) {
    var form = within(root, "#config-form")[0];
    if (!form || form._backappReady) return;
    form._backappReady = true;
    form.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-action]");
      if (!button) return;
      event.preventDefault();
      if (button.getAttribute("data-action") === "add-source") addSource(form);
      else removeSource(form, button);
    });
    form.addEventListener("change", function (event) {
      if (event.target.name === "dest-type") showDestination(form);
    });
    showDestination(form);
    // A new configuration starts in the viewer's own timezone rather than UTC.
    var zone = form.querySelector("#schedule-timezone[data-suggest-local]");
    if (zone && zone.value === "UTC" && localZone !== "UTC") {
      zone.value = localZone;
      zone.dispatchEvent(new Event("input", { bubbles: true }));
    }
    var summary = document.getElementById("error-summary");
    if (summary) summary.focus();
  }

  // -- browsing a backup: pick files and folders to restore ------------------------------------
  function setUpBrowseForm(root) {
    var form = within(root, "#browse-form")[0];
    if (!form || form._backappReady) return;
    form._backappReady = true;
    var button = form.querySelector("[data-selection-button]");
    var all = form.querySelector("[data-select-all]");
    var boxes = Array.prototype.slice.call(form.querySelectorAll("input[type=checkbox][name=path]"));
    function update() {
      var count = boxes.filter(function (box) { return box.checked; }).length;
      if (button) {
        button.disabled = count === 0;
        button.textContent = button.getAttribute("data-label") + (count ? " (" + count + ")" : "");
      }
      if (all) {
        all.checked = count > 0 && count === boxes.length;
        all.indeterminate = count > 0 && count < boxes.length;
      }
    }
    if (all && boxes.length) {
      all.hidden = false;
      all.addEventListener("change", function () {
        boxes.forEach(function (box) { box.checked = all.checked; });
        update();
      });
    }
    form.addEventListener("change", function (event) {
      if (event.target.name === "path") update();
    });
    update();  // a page restored from the back/forward cache keeps its ticks
  }

  // -- the restore form: show what the chosen destination needs ---------------------------
  function showRestoreChoices(form) {
    var checked = form.querySelector("input[name='where']:checked");
    var where = checked ? checked.value : "new";
    form.querySelectorAll("[data-where]").forEach(function (el) {
      el.hidden = el.getAttribute("data-where") !== where;
    });
    form.querySelectorAll("[data-where-not]").forEach(function (el) {
      el.hidden = el.getAttribute("data-where-not") === where;
    });
    var refuse = form.querySelector("#existing-refuse");
    var chosen = form.querySelector("input[name='existing']:checked");
    // The original location needs an explicit choice; a folder of one's own stops by default.
    if (where === "original" && refuse && refuse.checked) refuse.checked = false;
    if (where === "folder" && refuse && !chosen) refuse.checked = true;
  }

  function setUpRestoreForm(root) {
    var form = within(root, "#restore-form")[0];
    if (!form || form._backappReady) return;
    form._backappReady = true;
    form.addEventListener("change", function (event) {
      if (event.target.name === "where") showRestoreChoices(form);
    });
    showRestoreChoices(form);
    var summary = document.getElementById("error-summary");
    if (summary) summary.focus();
  }

  // -- wiring ----------------------------------------------------------------------------------
  function init(root) {
    localiseTimes(root);
    hideSameZone(root);
    watchProgress(root);
    setUpConfigForm(root);
    setUpBrowseForm(root);
    setUpRestoreForm(root);
  }

  function keepFocusedRegions() {
    // A periodic refresh must not pull focus from under a keyboard user.
    document.body.addEventListener("htmx:beforeRequest", function (event) {
      var elt = event.detail && event.detail.elt;
      var headers = event.detail && event.detail.requestConfig && event.detail.requestConfig.headers;
      var forced = headers && headers["X-Refresh"];
      if (!forced && elt && elt.hasAttribute && elt.hasAttribute("data-keep-focus") &&
          elt.contains(document.activeElement) && document.activeElement !== document.body) {
        event.preventDefault();
      }
    });
    document.body.addEventListener("htmx:beforeCleanupElement", function (event) {
      closeStreams(event.target);
    });
  }

  if (window.htmx) {
    window.htmx.onLoad(init);
    document.addEventListener("DOMContentLoaded", keepFocusedRegions);
  } else {
    document.addEventListener("DOMContentLoaded", function () { init(document); });
  }
})();
