// SensorGuard console: small progressive enhancement over server-rendered pages.
// Everything works without this file (forms post, links navigate); with it, the overview
// sorts and filters in place, refreshes itself, and buttons call the JSON API.
(function () {
  "use strict";
  function csrf() {
    var m = document.cookie.match(/(?:^|;\s*)sg_csrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  // ---- overview: sort, filter, live refresh -------------------------------------------
  var table = document.getElementById("assets");
  if (table) {
    var state = { key: table.dataset.sort || "status", dir: table.dataset.dir || "asc" };
    var filter = document.getElementById("filter");
    var statusSel = document.getElementById("status-filter");

    function cellValue(row, key) {
      var v = row.dataset[key];
      if (v === undefined) return "";
      var n = Number(v);
      return v !== "" && !isNaN(n) ? n : v.toLowerCase();
    }
    function apply() {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var q = filter ? filter.value.trim().toLowerCase() : "";
      var st = statusSel ? statusSel.value : "";
      rows.forEach(function (r) {
        var text = (r.dataset.asset + " " + r.dataset.model + " " + r.dataset.site).toLowerCase();
        r.hidden = (q && text.indexOf(q) < 0) || (st && r.dataset.statusName !== st);
      });
      rows.sort(function (a, b) {
        var x = cellValue(a, state.key), y = cellValue(b, state.key);
        var c = x < y ? -1 : x > y ? 1 : 0;
        if (c === 0) c = a.dataset.asset < b.dataset.asset ? -1 : 1;
        return state.dir === "asc" ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
        th.removeAttribute("aria-sort");
        if (th.dataset.key === state.key) th.setAttribute("aria-sort", state.dir === "asc" ? "ascending" : "descending");
      });
      var shown = rows.filter(function (r) { return !r.hidden; }).length;
      var counter = document.getElementById("shown");
      if (counter) counter.textContent = shown + " of " + rows.length + " shown";
    }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var b = th.querySelector("button");
      if (!b) return;
      b.addEventListener("click", function () {
        if (state.key === th.dataset.key) state.dir = state.dir === "asc" ? "desc" : "asc";
        else { state.key = th.dataset.key; state.dir = "asc"; }
        apply();
      });
    });
    if (filter) filter.addEventListener("input", apply);
    if (statusSel) statusSel.addEventListener("change", apply);
    apply();

    var every = Number(table.dataset.refresh || "0");
    if (every > 0) {
      setInterval(function () {
        fetch(table.dataset.fragment, { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) {
            if (!html) return;
            var tmp = document.createElement("tbody");
            tmp.innerHTML = html;
            table.replaceChild(tmp, table.tBodies[0]);
            var stamp = document.getElementById("updated");
            if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
            apply();
          })
          .catch(function () { /* keep the last table; the next poll retries */ });
      }, every * 1000);
    }
  }

  // ---- alarm actions: call the JSON API the scripts use -------------------------------
  Array.prototype.forEach.call(document.querySelectorAll("form[data-api]"), function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = {};
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && el.name !== "csrf" && el.value !== "") body[el.name] = el.value;
      });
      var out = document.getElementById("action-result");
      fetch(form.dataset.api, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify(body)
      }).then(function (r) {
        return r.json().then(function (j) { return { ok: r.ok, body: j }; });
      }).then(function (res) {
        if (res.ok) { window.location.reload(); return; }
        if (out) { out.hidden = false; out.className = "flash error"; out.textContent = (res.body.error && res.body.error.message) || res.body.message || "request failed"; }
      }).catch(function () {
        if (out) { out.hidden = false; out.className = "flash error"; out.textContent = "the server did not answer"; }
      });
    });
  });

  // ---- confirmations (rollback) -------------------------------------------------------
  Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  });
})();
