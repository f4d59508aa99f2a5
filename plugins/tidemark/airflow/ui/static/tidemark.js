/* The Tidemark tab and nav page: vanilla JS, no build step, no external resources. */
"use strict";
var Tidemark = (function () {
  var REFRESH_MS = 5000;
  var $ = function (id) { return document.getElementById(id); };
  var fmt = function (n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); };
  var mib = function (b) { return (b / 1048576).toFixed(1) + " MiB"; };
  var when = function (iso) { return iso ? iso.replace("T", " ").replace(/(\.\d+)?\+00:00$/, " UTC") : "–"; };
  function duration(s) {
    if (s === null || s === undefined) return "–";
    s = Math.round(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + sec + " s";
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function numbers(target, items) {
    target.replaceChildren();
    items.forEach(function (it) {
      target.appendChild(el("dt", {}, it[0]));
      var dd = el("dd", { id: it[1] }, it[2]);
      if (it[3] !== undefined && it[3] !== null) dd.setAttribute("data-value", String(it[3]));
      target.appendChild(dd);
    });
  }
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) throw new Error((body && body.detail) || ("HTTP " + r.status));
        return body;
      });
    });
  }
  function showError(msg) { var e = $("error"); e.textContent = msg; e.hidden = false; }

  // ---- the plot: backlog (MiB, before and after each poke's compression) and watermark (batches) over time
  function plot(target, history, planned, startedAt) {
    target.replaceChildren();
    if (!history.length) { target.appendChild(el("div", { class: "muted" }, "No sensor poke recorded yet.")); return; }
    var W = 760, H = 200, L = 60, R = 70, T = 10, B = 28, NS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H); svg.setAttribute("width", "100%"); svg.setAttribute("id", "backlog-plot");
    var started = startedAt ? Date.parse(startedAt) / 1000 : history[0].at;
    var t0 = Math.min(started, history[0].at), t1 = Math.max(history[history.length - 1].at, t0 + 1);
    var maxB = Math.max.apply(null, history.map(function (p) { return p.backlog_bytes; }).concat([1]));
    var maxW = Math.max(planned, 1);
    var x = function (t) { return L + (t - t0) / (t1 - t0) * (W - L - R); };
    var yB = function (b) { return H - B - b / maxB * (H - T - B); };
    var yW = function (w) { return H - B - w / maxW * (H - T - B); };
    function add(tag, attrs, text) {
      var e = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e); return e;
    }
    add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
    add("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
    add("line", { x1: W - R, y1: T, x2: W - R, y2: H - B, class: "axis" });
    add("text", { x: L - 6, y: T + 10, "text-anchor": "end" }, mib(maxB));
    add("text", { x: L - 6, y: H - B, "text-anchor": "end" }, "0");
    add("text", { x: W - R + 6, y: T + 10 }, maxW + " batches");
    add("text", { x: W - R + 6, y: H - B }, "0");
    add("text", { x: L, y: H - 8 }, "run start");
    add("text", { x: W - R, y: H - 8, "text-anchor": "end" }, duration(t1 - t0));
    // Sawtooth: the backlog a poke found, then what it left after compressing.
    var pts = [x(t0) + "," + yB(0)];
    history.forEach(function (p) { pts.push(x(p.at) + "," + yB(p.backlog_bytes)); pts.push(x(p.at) + "," + yB(p.remaining_bytes)); });
    add("polyline", { points: pts.join(" "), fill: "none", stroke: "var(--backlog)", "stroke-width": 2, id: "backlog-line" });
    // The watermark is known at each poke and holds until the next: a step line.
    var wpts = [x(t0) + "," + yW(0)], prev = 0;
    history.forEach(function (p) { wpts.push(x(p.at) + "," + yW(prev)); wpts.push(x(p.at) + "," + yW(p.watermark_batches)); prev = p.watermark_batches; });
    add("polyline", { points: wpts.join(" "), fill: "none", stroke: "var(--wm)", "stroke-width": 2, "stroke-dasharray": "5 3", id: "watermark-line" });
    target.appendChild(svg);
    var peak = history.reduce(function (a, p) { return p.backlog_bytes > a.backlog_bytes ? p : a; }, history[0]);
    target.appendChild(el("div", { class: "legend muted" },
      "— uncompressed backlog (left axis; peak " + peak.backlog_chunks + " chunks, " + mib(peak.backlog_bytes) +
      ")   - - watermark in batches (right axis)   " + history.length + " pokes"));
  }

  function renderBackfillLike(d) {
    var planned = d.planned_batches, loaded = d.loaded_batches;
    var pct = planned > 0 ? Math.floor(loaded / planned * 100) : 100;
    var wmPct = planned > 0 ? d.watermark.batches / planned * 100 : 100;
    var beyondPct = planned > 0 ? d.loaded_beyond_watermark / planned * 100 : 0;
    if (d.kind === "catchup") { wmPct = pct; beyondPct = 0; }
    $("bar-watermark").style.width = wmPct + "%";
    $("bar-beyond").style.left = wmPct + "%";
    $("bar-beyond").style.width = beyondPct + "%";
    $("progress-percent").textContent = pct + " %";
    $("progress-bar").setAttribute("aria-valuenow", String(pct));
    $("progress-bar").setAttribute("data-percent", String(pct));
    var items = [
      ["batches loaded", "loaded-batches", fmt(loaded) + " / " + fmt(planned), loaded],
      ["planned batches", "planned-batches", fmt(planned), planned],
      ["state", "run-state", d.state, d.state],
      ["rows loaded", "rows-loaded", fmt(d.rows_loaded), d.rows_loaded],
      ["rows/s", "rows-per-second", fmt(d.rows_per_second), d.rows_per_second],
      [d.state === "running" ? "ETA" : "load time", d.state === "running" ? "eta" : "elapsed",
        d.state === "running" ? duration(d.eta_seconds) : duration(d.elapsed_seconds), d.state === "running" ? d.eta_seconds : d.elapsed_seconds],
    ];
    if (d.kind !== "catchup") {
      items.splice(2, 0,
        ["watermark", "watermark-batches", d.watermark.batches + " batches, at " + when(d.watermark.time), d.watermark.batches],
        ["loaded beyond watermark", "beyond-watermark", fmt(d.loaded_beyond_watermark), d.loaded_beyond_watermark]);
      items.push(["chunks compressed so far", "chunks-compressed", fmt(d.compression.chunks_compressed) + " (" +
        fmt(d.compression.progressive) + " progressively)", d.compression.chunks_compressed]);
      items.push(["peak uncompressed backlog", "peak-backlog", d.peak_backlog.chunks + " chunks (" + mib(d.peak_backlog.bytes) + ")", d.peak_backlog.chunks]);
    }
    numbers($("numbers"), items);
    var failed = $("failed");
    if (d.failed_batches.length || d.resume) {
      failed.replaceChildren(el("strong", {}, d.failed_batches.length + " failed batch(es)"));
      var ul = el("ul", { id: "failed-list" });
      d.failed_batches.forEach(function (f) { ul.appendChild(el("li", {}, "batch " + f.index + ": " + f.window + " (" + f.state + ")")); });
      failed.appendChild(ul);
      if (d.resume) failed.appendChild(el("div", { id: "resume" }, d.resume));
      failed.hidden = false;
    } else failed.hidden = true;
    $("progress-section").hidden = false;
    if (d.kind !== "catchup") { plot($("plot"), d.history, planned, d.started_at); $("plot-section").hidden = false; }
    renderExtra(d);
  }

  function renderExtra(d) {
    var r = d.report, items = null, title = "";
    if (d.kind === "catchup") {
      var c = d.catchup; title = "Catchup: staging and publish";
      items = [["staged batches", "staged-batches", fmt(c.staged_batches) + " / " + fmt(d.planned_batches), c.staged_batches],
        ["publish", "publish-outcome", c.outcome, c.outcome]];
      if (c.published) {
        var total = Object.values(c.published_rows || {}).reduce(function (a, b) { return a + b; }, 0);
        items.push(["rows published", "published-rows", fmt(total), total]);
        items.push(["cursor after publish", "cursor-after", when(c.cursor_after_publish)]);
      }
    } else if (r && r.chunks) {
      title = "Report";
      items = [
        ["rows in window (verified)", "report-rows", fmt(r.rows_in_window_total), r.rows_in_window_total],
        ["speed", "report-speed", fmt(r.rows_per_second) + " rows/s over " + r.load_seconds + " s", r.rows_per_second],
        ["chunks compressed", "report-chunks", r.chunks.compressed + "/" + r.chunks.in_window, r.chunks.compressed],
        ["…progressively while loading", "report-progressive", fmt(r.chunks.compressed_during_load), r.chunks.compressed_during_load],
        ["…by the sensor after the last batch", "report-after", fmt(r.chunks.compressed_by_sensor_after_last_batch), r.chunks.compressed_by_sensor_after_last_batch],
        ["…in the final pass", "report-final", fmt(r.chunks.compressed_in_final_pass), r.chunks.compressed_in_final_pass],
        ["bytes before / after", "report-bytes", fmt(r.bytes.before_compression) + " / " + fmt(r.bytes.after_compression) + " B"],
        ["compression ratio", "report-ratio", r.bytes.ratio ? r.bytes.ratio + "×" : "–", r.bytes.ratio],
        ["last batch → fully compressed", "report-tail", r.seconds_from_last_batch_to_fully_compressed + " s", r.seconds_from_last_batch_to_fully_compressed],
      ];
    }
    if (items) { $("extra-title").textContent = title; numbers($("extra"), items); $("extra-section").hidden = false; }
    else $("extra-section").hidden = true;
  }

  function renderLive(d) {
    $("extra-title").textContent = "Live ingestion";
    numbers($("extra"), [
      ["cursor", "live-cursor", when(d.cursor)], ["source tip", "live-tip", when(d.tip)],
      ["lag", "live-lag", duration(d.lag_seconds), d.lag_seconds],
      ["threshold", "live-threshold", duration(d.threshold_seconds), d.threshold_seconds],
      ["lag vs threshold", "live-over", d.over_threshold ? "at or over: hand-over to catchup" : "below: ingesting unit by unit"],
      ["decision", "live-decision", d.decision ? d.decision.action + ": " + d.decision.reason : "–"],
    ]);
    $("extra-section").hidden = false;
  }

  function runPage() {
    var q = new URLSearchParams(location.search), dag = q.get("dag_id"), run = q.get("run_id");
    if (!dag || !run) { showError("dag_id and run_id are required"); return; }
    var url = "api/dags/" + encodeURIComponent(dag) + "/runs/" + encodeURIComponent(run);
    function tick() {
      getJSON(url).then(function (d) {
        $("error").hidden = true;
        $("title").textContent = "Tidemark " + (d.kind || "") + (d.dataset ? " – " + d.dataset : "");
        $("subtitle").textContent = d.window ? "[" + when(d.window.start) + ", " + when(d.window.end) + ")  ·  Airflow run " + d.airflow_state : "Airflow run " + d.airflow_state;
        if (d.pending) $("subtitle").textContent += "  ·  waiting for the plan";
        else if (d.kind === "live") renderLive(d);
        else renderBackfillLike(d);
        document.body.setAttribute("data-loaded", "1");
        document.body.setAttribute("data-refresh", d.refresh ? "on" : "off");
        $("refresh-status").textContent = d.refresh ? "refreshing every " + REFRESH_MS / 1000 + " s (database time " + d.db_ms + " ms)" : "run ended: not refreshing";
        if (d.refresh) setTimeout(tick, REFRESH_MS);
      }).catch(function (e) {
        showError(e.message.indexOf("not a Tidemark DAG") >= 0 ? "This run is not a Tidemark run: nothing to show." : e.message);
        document.body.setAttribute("data-loaded", "error");
      });
    }
    tick();
  }

  // Messages quote users' files: text nodes only (el sets textContent), never markup.
  function refusedDeclarations() {
    getJSON("api/declarations").then(function (d) {
      var list = $("refused-list");
      list.replaceChildren();
      (d.refused || []).forEach(function (message) { list.appendChild(el("li", {}, message)); });
      $("refused").hidden = !(d.refused || []).length;
      document.body.setAttribute("data-declarations", String((d.refused || []).length));
    }).catch(function (e) { showError("Refused declarations: " + e.message); });
  }

  function runsPage() {
    var base = location.pathname.replace(/\/tidemark\/runs\/?$/, "");
    refusedDeclarations();
    getJSON("api/runs").then(function (d) {
      var tbody = document.querySelector("#runs tbody");
      tbody.replaceChildren();
      if (!d.runs.length) tbody.appendChild(el("tr", {}, "")).appendChild(el("td", { colspan: "8", class: "muted" }, "No Tidemark run yet."));
      d.runs.forEach(function (r) {
        var tr = el("tr", { "data-run-id": r.run_id });
        var a = el("a", { href: base + "/dags/" + encodeURIComponent(r.dag_id) + "/runs/" + encodeURIComponent(r.dag_run_id) + "/plugin/tidemark", target: "_top" }, r.dag_run_id);
        tr.appendChild(el("td")).appendChild(a);
        tr.appendChild(el("td", {}, r.dataset));
        tr.appendChild(el("td", {}, r.kind));
        tr.appendChild(el("td", { class: "state-" + r.state }, r.state));
        tr.appendChild(el("td", {}, when(r.window.start) + " → " + when(r.window.end)));
        var pct = r.planned_batches ? Math.floor(r.loaded_batches / r.planned_batches * 100) : 100;
        var td = el("td"), bar = el("span", { class: "mini" }), fill = el("span");
        fill.style.width = pct + "%"; bar.appendChild(fill); td.appendChild(bar);
        td.appendChild(document.createTextNode(r.loaded_batches + "/" + r.planned_batches));
        tr.appendChild(td);
        tr.appendChild(el("td", {}, r.ratio ? r.ratio + "×" : "–"));
        tr.appendChild(el("td", {}, when(r.started_at)));
        tbody.appendChild(tr);
      });
      document.body.setAttribute("data-loaded", "1");
    }).catch(function (e) { showError(e.message); });
  }
  return { runPage: runPage, runsPage: runsPage };
})();
