"""What the Tidemark view in the Airflow UI shows, read from Tidemark's own bookkeeping.

Plain Python (no Airflow import) so it is testable against the real engine
alone; the plugin layer passes in what only Airflow knows (task instance
states, the run's conf). Every read is one short autocommit statement: on the
embedded engine all clients share one session, so a page refreshing every few
seconds must hold it for milliseconds, never for a transaction.

The sensor records one row per poke in ``tidemark.poke_history`` (watermark,
uncompressed backlog, rows so far) so the page can plot how compression kept
pace with the load. The history is bounded: past ``HISTORY_CAP`` rows for a
run every second older row is dropped (halving the resolution, keeping the
first and the latest), and the history of runs finished more than
``HISTORY_KEEP`` ago is deleted by the next poke of any run (it also goes with
the run's row: ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from tidemark.state.strip import WindowInfo, resume_instruction, strip

__all__ = ["FAILED_STATES", "TaskInfo", "WindowInfo", "live_view", "record_poke", "resume_instruction", "run_view"]

HISTORY_CAP = 256  # plenty for a plot ~760 px wide; the tab reads all of it every refresh
HISTORY_KEEP = timedelta(days=14)

# One statement, one observation: the run's row gets the latest watermark (the lower bound the next read
# starts from), the peak backlog and the heartbeat that keeps its claim alive; the history gets the poke,
# thinned when full, and old runs' history is pruned. Data-modifying CTEs share one snapshot, so the
# deletes never see (or remove) the new row.
# A batch's observation (``batch``) may race a newer one: the watermark it saw never lowers the run's.
_UPDATE_RUN = """UPDATE tidemark.runs SET
        watermark_batches = CASE WHEN %(batch)s THEN greatest(watermark_batches, %(wm)s) ELSE %(wm)s END,
        watermark_time = CASE WHEN %(batch)s AND watermark_time > %(wm_time)s THEN watermark_time ELSE %(wm_time)s END,
        peak_backlog_chunks = greatest(peak_backlog_chunks, %(chunks)s),
        peak_backlog_bytes = greatest(peak_backlog_bytes, %(bytes)s), updated_at = clock_timestamp()
    WHERE run_id = %(run)s"""
_RECORD_POKE = """
WITH run AS (""" + _UPDATE_RUN + """ RETURNING run_id, dataset, window_start, window_end),
n AS (SELECT count(*) AS rows FROM tidemark.poke_history WHERE run_id = %(run)s),
thin AS (
    DELETE FROM tidemark.poke_history h
    USING (SELECT at, row_number() OVER (ORDER BY at) AS r FROM tidemark.poke_history WHERE run_id = %(run)s) o, n
    WHERE n.rows >= %(cap)s AND h.run_id = %(run)s AND h.at = o.at AND o.r %% 2 = 0 AND o.r < n.rows),
old AS (
    DELETE FROM tidemark.poke_history h USING tidemark.runs r
    WHERE h.run_id = r.run_id AND r.finished_at < clock_timestamp() - %(keep)s::interval)
INSERT INTO tidemark.poke_history (run_id, watermark_batches, watermark_time, backlog_chunks, backlog_bytes,
                                   remaining_chunks, remaining_bytes, stored_bytes, source, rows_loaded)
SELECT r.run_id, %(wm)s, %(wm_time)s, %(chunks)s, %(bytes)s, %(left_chunks)s, %(left_bytes)s, %(stored)s,
       CASE WHEN %(batch)s THEN 'batch' ELSE 'poke' END,
       coalesce((SELECT sum(c.value::bigint) FROM tidemark.batch_ledger b, jsonb_each_text(b.row_counts) c
                 WHERE b.dataset = r.dataset AND b.run_id = r.run_id
                   AND b.window_start >= r.window_start AND b.window_start < r.window_end), 0)
FROM run r
ON CONFLICT (run_id, at) DO NOTHING
"""


def record_poke(
    conn: psycopg.Connection,
    run_id: str,
    *,
    watermark_batches: int,
    watermark_time: datetime,
    backlog_chunks: int,
    backlog_bytes: int,
    remaining_chunks: int,
    remaining_bytes: int,
    stored_bytes: int | None = None,
    batch: bool = False,
    cap: int = HISTORY_CAP,
) -> None:
    """The sensor's observation of one poke: the run's progress and the UI's backlog plot, one short statement.

    ``batch``: the observation of a batch that just committed (rows and bytes
    stored over time, where direct COPY leaves no backlog to plot and the
    sensor may poke only once or twice); it never lowers the run's watermark.

    Two observations in the same clock tick (the embedded engine's clock has
    millisecond resolution) keep the first in the history. The progress is
    recorded even where the history cannot be: a run planned before an upgrade
    added the history table gets its watermark, never a failed poke over a plot.
    """
    values = {
        "run": run_id, "cap": cap, "keep": HISTORY_KEEP, "wm": watermark_batches, "wm_time": watermark_time,
        "chunks": backlog_chunks, "bytes": backlog_bytes, "left_chunks": remaining_chunks, "left_bytes": remaining_bytes,
        "stored": stored_bytes, "batch": batch,
    }
    try:
        conn.execute(_RECORD_POKE, values)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        if not conn.autocommit:
            conn.rollback()
        conn.execute(_UPDATE_RUN, values)


@dataclass(frozen=True)
class TaskInfo:
    """What Airflow knows about one mapped batch task instance (passed in by the plugin)."""

    index: int
    state: str | None
    label: str | None = None
    try_number: int = 0


FAILED_STATES = frozenset({"failed", "upstream_failed", "removed"})
# Every figure of the run's current attempt (a rerun under the same run id starts a new one: state.runs.claim).
_RUN_TEMPLATE = """
SELECT r.run_id, r.dataset, r.kind, r.window_start, r.window_end, r.state, r.planned_batches,
       r.watermark_batches, r.watermark_time, r.peak_backlog_chunks, r.peak_backlog_bytes,
       r.started_at, r.updated_at, r.finished_at, r.report, clock_timestamp(),
       l.batches, l.rows, l.last_commit, l.beyond, l.windows, t.per_table,
       c.compressed, c.progressive, c.bytes_before, c.bytes_after, c.written,
       h.history, {attempt}, f.failures, a.attempts
FROM tidemark.runs r
LEFT JOIN LATERAL (
    SELECT count(*) AS batches, coalesce(sum(rc.n), 0) AS rows, max(b.committed_at) AS last_commit,
           count(*) FILTER (WHERE b.window_start >= coalesce(r.watermark_time, r.window_start)) AS beyond,
           json_agg(json_build_array(extract(epoch FROM b.window_start), rc.n)) AS windows
    FROM tidemark.batch_ledger b
    CROSS JOIN LATERAL (SELECT sum(value::bigint) AS n FROM jsonb_each_text(b.row_counts)) rc
    WHERE b.dataset = r.dataset AND b.run_id = r.run_id AND b.committed_at >= r.started_at
      AND b.window_start >= r.window_start AND b.window_start < r.window_end) l ON true
LEFT JOIN LATERAL (
    SELECT json_object_agg(k, n) AS per_table FROM (
        SELECT c.key AS k, sum(c.value::bigint) AS n
        FROM tidemark.batch_ledger b CROSS JOIN LATERAL jsonb_each_text(b.row_counts) c
        WHERE b.dataset = r.dataset AND b.run_id = r.run_id AND b.committed_at >= r.started_at
          AND b.window_start >= r.window_start AND b.window_start < r.window_end
        GROUP BY c.key) x) t ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS compressed, count(*) FILTER (WHERE phase = 'progressive') AS progressive,
           coalesce(sum(bytes_before), 0) AS bytes_before, coalesce(sum(bytes_after), 0) AS bytes_after,
           -- direct COPY's chunks are logged as written (no sizes, no time); compress_chunk always has both
           count(*) FILTER (WHERE phase = 'progressive' AND bytes_before IS NULL AND seconds = 0) AS written
    FROM tidemark.compression_log WHERE run_id = r.run_id AND compressed_at >= r.started_at) c ON true
{history}
WHERE r.run_id = %s
"""
_HISTORY = """LEFT JOIN LATERAL (
    SELECT json_agg(json_build_array(extract(epoch FROM p.at), p.watermark_batches, extract(epoch FROM p.watermark_time),
                                     p.backlog_chunks, p.backlog_bytes, p.remaining_chunks, p.remaining_bytes,
                                     p.rows_loaded, p.stored_bytes, p.source) ORDER BY p.at) AS history
    FROM tidemark.poke_history p WHERE p.run_id = r.run_id) h ON true
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_array(x.batch_index, x.try_number, x.error, extract(epoch FROM x.failed_at))
                    ORDER BY x.batch_index, x.try_number) AS failures
    FROM tidemark.batch_failures x WHERE x.run_id = r.run_id AND x.attempt = r.attempt) f ON true
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object(
               'attempt', y.attempt, 'state', y.state, 'started_at', y.started_at, 'finished_at', y.finished_at,
               'planned_batches', y.planned_batches, 'batches_loaded', y.report -> 'batches' -> 'loaded',
               'rows_loaded', y.report -> 'rows_loaded_total', 'stored_bytes', y.report -> 'bytes' -> 'stored',
               'ratio', coalesce(y.report -> 'bytes' -> 'storage_ratio', y.report -> 'bytes' -> 'ratio'),
               'report', y.report) ORDER BY y.attempt DESC) AS attempts
    FROM tidemark.runs_history y WHERE y.run_id = r.run_id) a ON true"""
# Bookkeeping from before the history, attempts and failures (the next run's plan creates them): no plot, one attempt.
_NO_HISTORY = "CROSS JOIN (SELECT NULL::json AS history, NULL::json AS failures, NULL::json AS attempts) h"
_RUN = _RUN_TEMPLATE.replace("{history}", _HISTORY).replace("{attempt}", "r.attempt")
_RUN_WITHOUT_HISTORY = (_RUN_TEMPLATE.replace("{history}", _NO_HISTORY).replace("{attempt}", "1")
                        .replace("f.failures, a.attempts", "h.failures, h.attempts"))


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _history(raw: Sequence[Sequence[Any]] | None) -> list[dict[str, Any]]:
    out = []
    for at, wm, wm_time, chunks, size, left_chunks, left_bytes, rows, *more in raw or []:
        stored, source = (more + [None, None])[:2]
        out.append({
            "at": float(at), "watermark_batches": int(wm), "watermark_time": float(wm_time) if wm_time is not None else None,
            "backlog_chunks": int(chunks), "backlog_bytes": int(size), "remaining_chunks": int(left_chunks),
            "remaining_bytes": int(left_bytes), "rows_loaded": int(rows),
            "stored_bytes": int(stored) if stored is not None else None, "source": source or "poke",
        })
    return out


def run_view(
    conn: psycopg.Connection,
    run_key: str,
    tasks: Sequence[TaskInfo] = (),
    *,
    staging: str | None = None,
    windows: Sequence[WindowInfo] = (),
    conf: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Everything the run's Tidemark tab shows, or None if Tidemark has no record of the run.

    ``tasks`` are the run's mapped batch task instances (states from Airflow);
    ``windows`` the plan's windows (batches and skipped ones); ``conf`` the
    run's params (for the resume instruction); ``staging`` is a catchup's
    staging schema (from its plan summary).
    """
    try:
        row = conn.execute(_RUN, (run_key,)).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        try:  # bookkeeping from before the history table or its columns (created by the next run's plan)
            row = conn.execute(_RUN_WITHOUT_HISTORY, (run_key,)).fetchone()
        except psycopg.errors.UndefinedTable:  # no Tidemark run has ever planned on this database
            return None
    if row is None:
        return None
    (run_id, dataset, kind, w_start, w_end, state, planned, wm_batches, wm_time, peak_chunks, peak_bytes,
     started_at, updated_at, finished_at, report, now, loaded, rows, last_commit, beyond, ledger_windows, per_table,
     compressed, progressive, bytes_before, bytes_after, written, history, attempt, failures, attempts) = row
    loaded = int(loaded)
    rows = int(rows)
    planned = int(planned)
    end_of_load = finished_at if finished_at and state != "running" else now
    if loaded >= planned and last_commit:
        end_of_load = last_commit
    elapsed = max((end_of_load - started_at).total_seconds(), 0.0)
    rate = rows / elapsed if elapsed > 0 and rows else None
    eta = None
    if state == "running" and 0 < loaded < planned and elapsed > 0:
        eta = elapsed / loaded * (planned - loaded)
    cells = strip(tasks, windows, {float(at): int(n) for at, n in ledger_windows or []}, failures)
    states = {t.index: t for t in tasks}
    failed = [
        {"index": c["index"], "state": states[c["index"]].state, "window": c["window"], "error": c.get("error"),
         "try_number": c.get("error_try") or states[c["index"]].try_number}
        for c in cells if c["index"] in states and states[c["index"]].state in FAILED_STATES
    ]
    points = _history(history)
    view: dict[str, Any] = {
        "run_id": run_id,
        "dataset": dataset,
        "kind": kind,
        "attempt": int(attempt),
        "earlier_attempts": attempts or [],
        "window": {"start": _iso(w_start), "end": _iso(w_end)},
        "state": state,
        "planned_batches": planned,
        "loaded_batches": loaded,
        "watermark": {"batches": int(wm_batches), "time": _iso(wm_time)},
        "loaded_beyond_watermark": int(beyond) if kind == "backfill" else 0,
        "strip": cells,
        "failed_batches": failed,
        "resume": resume_instruction(kind, run_id, conf, [f["index"] for f in failed])
        if failed or state == "failed" else None,
        "rows_loaded": rows,
        "rows_by_table": {str(k): int(v) for k, v in (per_table or {}).items()},
        "rows_per_second": round(rate) if rate else None,
        "elapsed_seconds": round(elapsed, 1),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "compression": {
            "chunks_compressed": int(compressed), "progressive": int(progressive),
            "written_compressed": int(written), "compressed_afterwards": int(compressed) - int(written),
            "bytes_before": int(bytes_before), "bytes_after": int(bytes_after),
        },
        "peak_backlog": {"chunks": int(peak_chunks), "bytes": int(peak_bytes)},
        "history": points,
        # The window's chunks on disk at the latest observation (a poke's or a batch commit's); the report has the final
        # figures with the uncompressed size they stand for.
        "stored_bytes": next((h["stored_bytes"] for h in reversed(points) if h["stored_bytes"] is not None), None),
        "started_at": _iso(started_at),
        "updated_at": _iso(updated_at),
        "finished_at": _iso(finished_at),
        "now": _iso(now),
        "report": report,
    }
    if kind == "catchup":
        view["catchup"] = _catchup(conn, staging, report, state)
        if state == "running" or not report:
            view["loaded_batches"] = view["catchup"]["staged_batches"]
    return view


def _catchup(conn: psycopg.Connection, staging: str | None, report: Mapping[str, Any] | None, state: str) -> dict[str, Any]:
    staged = 0
    if staging:
        found = conn.execute(
            "SELECT count(*) FROM tidemark.staging_manifest WHERE staging = %s", (staging,),
        ).fetchone()
        staged = int(found[0]) if found else 0
    published = bool(report and "published" in report)
    return {
        "staging": staging,
        "staged_batches": staged,
        "published": published,
        "published_rows": report.get("published") if published and report else None,
        "cursor_after_publish": report.get("cursor") if published and report else None,
        "outcome": "published" if published else ("not published (failed)" if state == "failed" else "pending"),
    }


def live_view(
    conn: psycopg.Connection,
    dataset: str,
    *,
    tip: datetime,
    threshold: timedelta,
    decision: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A live run: the dataset's cursor now, the source's tip, and the lag against the threshold."""
    try:
        row = conn.execute(
            "SELECT position, updated_at, updated_by FROM tidemark.cursors WHERE dataset = %s", (dataset,)
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        row = None
    cursor = row[0] if row else None
    lag = (tip - cursor).total_seconds() if cursor else None
    return {
        "kind": "live",
        "dataset": dataset,
        "cursor": _iso(cursor),
        "cursor_updated_at": _iso(row[1]) if row else None,
        "cursor_updated_by": row[2] if row else None,
        "tip": tip.isoformat(),
        "lag_seconds": lag,
        "threshold_seconds": threshold.total_seconds(),
        "over_threshold": lag is not None and lag >= threshold.total_seconds(),
        "decision": dict(decision) if decision else None,
    }
