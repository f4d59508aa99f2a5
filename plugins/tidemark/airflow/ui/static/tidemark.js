/* The Tidemark tab and nav page: vanilla JS, no build step, no external resources. */
"use strict";
var Tidemark = (function () {
  var REFRESH_MS = 5000;
  var $ = function (id) { return document.getElementById(id); };
  var fmt = function (n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); };
  function bytes(b) {
    if (b === null || b === undefined) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, v = Number(b);
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return i === 0 ? v + " B" : v.toFixed(1) + " " + units[i];
  }
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

  // ---- the plot, over the run: bytes stored (left axis), the uncompressed backlog where there is one (left axis, a
  // sawtooth: what a poke found, then what it left), rows loaded (scaled to the height, its value at the end) and the
  // watermark in batches (right axis). Observations come from the sensor's pokes and from each batch's commit.
  function plot(target, history, planned, startedAt) {
    target.replaceChildren();
    if (!history.length) { target.appendChild(el("div", { class: "muted" }, "Nothing observed yet: the first batch's commit or the sensor's first poke adds a point.")); return; }
    var W = 760, H = 210, L = 70, R = 90, T = 12, B = 28, NS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H); svg.setAttribute("width", "100%"); svg.setAttribute("id", "backlog-plot");
    svg.setAttribute("role", "img");
    var started = startedAt ? Date.parse(startedAt) / 1000 : history[0].at;
    var t0 = Math.min(started, history[0].at), t1 = Math.max(history[history.length - 1].at, t0 + 1);
    var stored = history.filter(function (p) { return p.stored_bytes !== null && p.stored_bytes !== undefined; });
    var hasBacklog = history.some(function (p) { return p.backlog_bytes > 0; });
    var maxB = Math.max.apply(null, history.map(function (p) { return p.backlog_bytes; })
      .concat(stored.map(function (p) { return p.stored_bytes; })).concat([1]));
    var maxRows = Math.max.apply(null, history.map(function (p) { return p.rows_loaded; }).concat([1]));
    var maxW = Math.max(planned, 1);
    var x = function (t) { return L + (t - t0) / (t1 - t0) * (W - L - R); };
    var yB = function (b) { return H - B - b / maxB * (H - T - B); };
    var yW = function (w) { return H - B - w / maxW * (H - T - B); };
    var yR = function (r) { return H - B - r / maxRows * (H - T - B); };
    function add(tag, attrs, text) {
      var e = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e); return e;
    }
    add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
    add("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
    add("line", { x1: W - R, y1: T, x2: W - R, y2: H - B, class: "axis" });
    add("text", { x: L - 6, y: T + 10, "text-anchor": "end" }, bytes(maxB));
    add("text", { x: L - 6, y: H - B, "text-anchor": "end" }, "0");
    add("text", { x: W - R + 6, y: T + 10 }, maxW + " batches");
    add("text", { x: W - R + 6, y: H - B }, "0");
    add("text", { x: L, y: H - 8 }, "run start");
    add("text", { x: W - R, y: H - 8, "text-anchor": "end" }, duration(t1 - t0));
    if (hasBacklog) {
      var pts = [x(t0) + "," + yB(0)];
      history.forEach(function (p) { pts.push(x(p.at) + "," + yB(p.backlog_bytes)); pts.push(x(p.at) + "," + yB(p.remaining_bytes)); });
      add("polyline", { points: pts.join(" "), fill: "none", stroke: "var(--backlog)", "stroke-width": 2, id: "backlog-line" });
    }
    // Rows: a light area under a dotted line (bytes stored grow with the rows, so the two lines often coincide).
    var rpts = [x(t0) + "," + yR(0)];
    history.forEach(function (p) { rpts.push(x(p.at) + "," + yR(p.rows_loaded)); });
    var last = history[history.length - 1];
    add("polygon", { points: rpts.concat([x(last.at) + "," + yR(0)]).join(" "), fill: "var(--rows)", "fill-opacity": 0.12, stroke: "none", id: "rows-area" });
    add("polyline", { points: rpts.join(" "), fill: "none", stroke: "var(--rows)", "stroke-width": 1.5, "stroke-dasharray": "2 3", id: "rows-line" });
    add("text", { x: x(last.at) - 6, y: Math.min(yR(last.rows_loaded) + 16, H - B - 4), "text-anchor": "end", class: "rows-label" }, fmt(last.rows_loaded) + " rows");
    if (stored.length) {
      var spts = [x(t0) + "," + yB(0)];
      stored.forEach(function (p) { spts.push(x(p.at) + "," + yB(p.stored_bytes)); });
      add("polyline", { points: spts.join(" "), fill: "none", stroke: "var(--stored)", "stroke-width": 2, id: "stored-line" });
    }
    // The watermark is known at each observation and holds until the next: a step line, never lowered.
    var wpts = [x(t0) + "," + yW(0)], prev = 0;
    history.forEach(function (p) { var w = Math.max(prev, p.watermark_batches); wpts.push(x(p.at) + "," + yW(prev)); wpts.push(x(p.at) + "," + yW(w)); prev = w; });
    add("polyline", { points: wpts.join(" "), fill: "none", stroke: "var(--wm)", "stroke-width": 2, "stroke-dasharray": "5 3", id: "watermark-line" });
    target.appendChild(svg);
    var legend = el("div", { class: "legend muted", id: "plot-legend" });
    function key(cls, text) { legend.appendChild(el("span", { class: "sw " + cls })); legend.appendChild(document.createTextNode(text)); }
    if (stored.length) key("sw-stored", "bytes stored (left axis; now " + bytes(stored[stored.length - 1].stored_bytes) + ")");
    if (hasBacklog) {
      var peak = history.reduce(function (a, p) { return p.backlog_bytes > a.backlog_bytes ? p : a; }, history[0]);
      key("sw-backlog", "uncompressed backlog (left axis; peak " + peak.backlog_chunks + " chunks, " + bytes(peak.backlog_bytes) + ")");
    } else key("sw-backlog", "no uncompressed backlog: chunks are written compressed");
    key("sw-rows", "rows loaded (shaded, to scale: " + fmt(last.rows_loaded) + " at the end)");
    key("sw-watermark", "watermark in batches (right axis, dashed)");
    legend.appendChild(document.createTextNode("  " + history.length + " observations (" +
      history.filter(function (p) { return p.source === "batch"; }).length + " batch commits, " +
      history.filter(function (p) { return p.source !== "batch"; }).length + " sensor pokes)"));
    target.appendChild(legend);
  }

  // The task instance's page in Airflow's UI: its default tab is the log (of the try given).
  function logHref(d, index, tryNumber) {
    var base = location.pathname.replace(/\/tidemark\/run\/?$/, "");
    return base + "/dags/" + encodeURIComponent(d.dag_id) + "/runs/" + encodeURIComponent(d.dag_run_id) + "/tasks/" +
      encodeURIComponent(d.batch_task_id) + "/mapped/" + index + (tryNumber ? "?try_number=" + tryNumber : "");
  }
  function logLink(d, index, tryNumber, text) {
    return el("a", { href: logHref(d, index, tryNumber), target: "_top", class: "log-link", "data-index": String(index) }, text);
  }

  // One cell per window of the range: loaded, running, waiting, retrying, failed, or skipped as already loaded.
  var STATUS_TEXT = { loaded: "loaded", running: "running", waiting: "waiting", retrying: "failed, will retry",
    failed: "failed", skipped: "skipped: already loaded" };
  function renderStrip(d) {
    var strip = $("strip"), cells = d.strip || [];
    strip.replaceChildren();
    var counts = {};
    cells.forEach(function (c) {
      counts[c.status] = (counts[c.status] || 0) + 1;
      var title = (c.index === null ? "" : "batch " + c.index + ": ") + c.window + " - " + STATUS_TEXT[c.status] +
        (c.rows !== null && c.rows !== undefined ? ", " + fmt(c.rows) + " rows" : "") +
        (c.error ? "\n" + c.error : "") + (c.earlier_error ? "\nloaded after try " + c.error_try + " failed: " + c.earlier_error : "");
      var attrs = { class: "cell cell-" + c.status, title: title, "data-status": c.status, role: "listitem" };
      if (c.index !== null) attrs["data-index"] = String(c.index);
      var cell = c.index !== null && c.status !== "waiting" ? el("a", Object.assign(attrs, { href: logHref(d, c.index, c.error_try || c.try_number), target: "_top" }))
        : el("span", attrs);
      cell.setAttribute("aria-label", title);
      strip.appendChild(cell);
    });
    var keys = $("strip-legend");
    keys.replaceChildren();
    ["loaded", "running", "waiting", "retrying", "failed", "skipped"].forEach(function (k) {
      if (!counts[k]) return;
      keys.appendChild(el("span", { class: "sw cell-" + k }));
      keys.appendChild(document.createTextNode(STATUS_TEXT[k] + " " + counts[k]));
    });
    var errors = $("strip-errors");
    errors.replaceChildren();
    cells.filter(function (c) { return c.error; }).forEach(function (c) {
      var li = el("li", { class: "strip-error", "data-index": String(c.index) });
      li.appendChild(el("strong", {}, "batch " + c.index + " (" + c.window + "), try " + c.error_try + ": "));
      li.appendChild(el("span", { class: "error-line" }, c.error));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(logLink(d, c.index, c.error_try, "log"));
      errors.appendChild(li);
    });
    var tables = $("rows-by-table");
    tables.replaceChildren();
    Object.keys(d.rows_by_table || {}).sort().forEach(function (t) {
      tables.appendChild(el("dt", {}, t));
      tables.appendChild(el("dd", { "data-table": t, "data-value": String(d.rows_by_table[t]) }, fmt(d.rows_by_table[t]) + " rows"));
    });
    $("strip-section").hidden = !cells.length;
  }

  function renderAttempts(d) {
    var box = $("attempts");
    var earlier = d.earlier_attempts || [];
    if (!earlier.length) { box.hidden = true; return; }
    box.replaceChildren(el("h2", {}, "Attempt " + d.attempt + " of this run id; earlier attempts"));
    var table = el("table", { id: "attempts-table" }), head = el("tr");
    ["attempt", "state", "started", "finished", "batches loaded", "rows loaded", "stored", "ratio"].forEach(function (h) { head.appendChild(el("th", {}, h)); });
    table.appendChild(el("thead")).appendChild(head);
    var body = el("tbody");
    earlier.forEach(function (a) {
      var tr = el("tr", { "data-attempt": String(a.attempt) });
      [a.attempt, a.state, when(a.started_at), when(a.finished_at), fmt(a.batches_loaded) + " / " + fmt(a.planned_batches),
        fmt(a.rows_loaded), a.stored_bytes ? bytes(a.stored_bytes) : "–", a.ratio ? a.ratio + "×" : "–"].forEach(function (v) { tr.appendChild(el("td", {}, String(v))); });
      body.appendChild(tr);
    });
    table.appendChild(body);
    box.appendChild(table);
    box.hidden = false;
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
      var cc = d.compression;
      items.push(["chunks compressed so far", "chunks-compressed", fmt(cc.chunks_compressed) + (cc.written_compressed !== undefined
        ? " (" + fmt(cc.written_compressed) + " written compressed, " + fmt(cc.compressed_afterwards) + " compressed afterwards)"
        : " (" + fmt(cc.progressive) + " progressively)"), cc.chunks_compressed]);
      items.push(["peak uncompressed backlog", "peak-backlog", d.peak_backlog.chunks + " chunks (" + bytes(d.peak_backlog.bytes) + ")", d.peak_backlog.chunks]);
      items.push(["stored so far", "stored-now", bytes(d.stored_bytes), d.stored_bytes]);
    }
    numbers($("numbers"), items);
    renderStrip(d);
    var failed = $("failed");
    if (d.failed_batches.length || d.resume) {
      failed.replaceChildren(el("strong", {}, d.failed_batches.length + " failed batch(es)"));
      var ul = el("ul", { id: "failed-list" });
      d.failed_batches.forEach(function (f) {
        var li = el("li", { "data-index": String(f.index) });
        li.appendChild(document.createTextNode("batch " + f.index + ": " + f.window + " (" + f.state + ") "));
        li.appendChild(logLink(d, f.index, f.try_number, "log of try " + f.try_number));
        if (f.error) li.appendChild(el("div", { class: "error-line" }, f.error));
        ul.appendChild(li);
      });
      failed.appendChild(ul);
      if (d.resume) failed.appendChild(el("div", { id: "resume" }, d.resume));
      failed.hidden = false;
    } else failed.hidden = true;
    renderAttempts(d);
    $("progress-section").hidden = false;
    if (d.kind !== "catchup") { plot($("plot"), d.history, planned, d.started_at); $("plot-section").hidden = false; }
    renderExtra(d);
  }

  // How the chunks came to be compressed: written compressed, or by compress_chunk while loading / after / at the end.
  function compressionItems(c) {
    var later = c.afterwards || { during_load: c.compressed_during_load, after_last_batch: c.compressed_by_sensor_after_last_batch,
                                  final_pass: c.compressed_in_final_pass };
    return [
      ["…compressed afterwards while loading", "report-progressive", fmt(later.during_load), later.during_load],
      ["…by the sensor after the last batch", "report-after", fmt(later.after_last_batch), later.after_last_batch],
      ["…in the final pass", "report-final", fmt(later.final_pass), later.final_pass],
    ];
  }

  // What the window's chunks take and what they stand for, in every write mode (older reports: what they recorded).
  function storageItems(r) {
    var b = r.bytes, c = r.chunks;
    if (b.stored === undefined) {
      return [["bytes before / after", "report-bytes", bytes(b.before_compression) + " / " + bytes(b.after_compression)],
        ["compression ratio", "report-ratio", b.ratio ? b.ratio + "×" : "–", b.ratio]];
    }
    var how = b.uncompressed_measured ? (b.uncompressed_from_timescaledb ? "TimescaleDB's figure + measured" : "measured: " +
      fmt(b.probe_rows) + " rows COPYed into an uncompressed table, rolled back") : "TimescaleDB's before_compression_total_bytes";
    return [
      ["bytes stored", "report-stored", bytes(b.stored), b.stored],
      ["uncompressed, they stand for", "report-uncompressed", bytes(b.uncompressed) + " (" + how + ")", b.uncompressed],
      ["compression ratio", "report-ratio", b.storage_ratio ? b.storage_ratio + "×" : "–", b.storage_ratio],
      ["chunks written compressed", "report-written-compressed", fmt(c.written_compressed) + " (direct COPY)", c.written_compressed],
      ["chunks compressed afterwards", "report-compressed-afterwards", fmt(c.compressed_afterwards) + " (compress_chunk)", c.compressed_afterwards],
    ];
  }

  function verifiedText(r) {
    var v = r.verified_against;
    if (!v) return "checked against the batch ledger";
    if (!v.not_counted_by_source.length) return "checked against the batch ledger and the source's own count";
    if (!v.source_counts.length) return "checked against the batch ledger; the source does not count rows";
    return "checked against the batch ledger; the source counted " + v.source_counts.join(", ") + " only";
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
        ["rows in window", "report-rows", fmt(r.rows_in_window_total) + " (" + verifiedText(r) + ")", r.rows_in_window_total],
        ["speed", "report-speed", r.rows_per_second && r.batches.loaded ? fmt(r.rows_per_second) + " rows/s over " + r.load_seconds + " s"
          : "– (nothing loaded by this run: every window was already loaded)", r.rows_per_second],
        ["chunks compressed", "report-chunks", r.chunks.compressed + "/" + r.chunks.in_window, r.chunks.compressed],
      ].concat(compressionItems(r.chunks)).concat(storageItems(r)).concat([
        ["last batch → fully compressed", "report-tail", r.seconds_from_last_batch_to_fully_compressed + " s", r.seconds_from_last_batch_to_fully_compressed],
      ]);
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
        $("refresh-status").textContent = d.refresh ? "refreshing every " + REFRESH_MS / 1000 + " s" : "run ended: not refreshing";
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
    var q = new URLSearchParams(location.search);
    refusedDeclarations();
    var params = new URLSearchParams();
    if (q.get("dataset")) params.set("dataset", q.get("dataset"));
    if (q.get("state")) params.set("state", q.get("state"));
    getJSON("api/runs" + (params.toString() ? "?" + params.toString() : "")).then(function (d) {
      var pick = $("filter-dataset");
      pick.replaceChildren(el("option", { value: "" }, "every dataset"));
      (d.datasets || []).forEach(function (name) { pick.appendChild(el("option", { value: name }, name)); });
      pick.value = q.get("dataset") || "";
      $("filter-state").value = q.get("state") || "";
      var tbody = document.querySelector("#runs tbody");
      tbody.replaceChildren();
      if (!d.runs.length) tbody.appendChild(el("tr", {}, "")).appendChild(el("td", { colspan: "10", class: "muted" },
        params.toString() ? "No Tidemark run matches the filter." : "No Tidemark run yet."));
      d.runs.forEach(function (r) {
        var tr = el("tr", { "data-run-id": r.run_id, "data-attempt": String(r.attempt), "data-latest": r.latest_attempt ? "1" : "0" });
        var a = el("a", { href: base + "/dags/" + encodeURIComponent(r.dag_id) + "/runs/" + encodeURIComponent(r.dag_run_id) + "/plugin/tidemark", target: "_top" }, r.dag_run_id);
        tr.appendChild(el("td")).appendChild(a);
        tr.appendChild(el("td", { class: "num" }, String(r.attempt) + (r.latest_attempt ? "" : " (earlier)")));
        tr.appendChild(el("td", {}, r.dataset));
        tr.appendChild(el("td", {}, r.kind));
        tr.appendChild(el("td", { class: "state-" + r.state }, r.state));
        tr.appendChild(el("td", {}, when(r.window.start) + " → " + when(r.window.end)));
        var pct = r.planned_batches ? Math.floor(r.loaded_batches / r.planned_batches * 100) : 100;
        var td = el("td"), bar = el("span", { class: "mini" }), fill = el("span");
        fill.style.width = Math.min(pct, 100) + "%"; bar.appendChild(fill); td.appendChild(bar);
        td.appendChild(document.createTextNode(r.loaded_batches + "/" + r.planned_batches));
        tr.appendChild(td);
        tr.appendChild(el("td", { class: "num" }, r.stored_bytes ? bytes(r.stored_bytes) : "–"));
        tr.appendChild(el("td", { class: "num" }, r.ratio ? r.ratio + "×" : "–"));
        tr.appendChild(el("td", {}, when(r.started_at)));
        tbody.appendChild(tr);
      });
      document.body.setAttribute("data-loaded", "1");
    }).catch(function (e) { showError(e.message); });
    $("filters").addEventListener("change", function () {
      var next = new URLSearchParams();
      if ($("filter-dataset").value) next.set("dataset", $("filter-dataset").value);
      if ($("filter-state").value) next.set("state", $("filter-state").value);
      location.search = next.toString();
    });
  }
  return { runPage: runPage, runsPage: runsPage };
})();
