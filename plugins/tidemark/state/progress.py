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

HISTORY_CAP = 256  # plenty for a plot ~760 px wide; the tab reads all of it every refresh
HISTORY_KEEP = timedelta(days=14)

# One statement, one observation: the run's row gets the latest watermark (the lower bound the next read
# starts from), the peak backlog and the heartbeat that keeps its claim alive; the history gets the poke,
# thinned when full, and old runs' history is pruned. Data-modifying CTEs share one snapshot, so the
# deletes never see (or remove) the new row.
_UPDATE_RUN = """UPDATE tidemark.runs SET watermark_batches = %(wm)s, watermark_time = %(wm_time)s,
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
                                   remaining_chunks, remaining_bytes, rows_loaded)
SELECT r.run_id, %(wm)s, %(wm_time)s, %(chunks)s, %(bytes)s, %(left_chunks)s, %(left_bytes)s,
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
    cap: int = HISTORY_CAP,
) -> None:
    """The sensor's observation of one poke: the run's progress and the UI's backlog plot, one short statement.

    Two observations in the same clock tick (the embedded engine's clock has
    millisecond resolution) keep the first in the history. The progress is
    recorded even where the history cannot be: a run planned before an upgrade
    added the history table gets its watermark, never a failed poke over a plot.
    """
    values = {
        "run": run_id, "cap": cap, "keep": HISTORY_KEEP, "wm": watermark_batches, "wm_time": watermark_time,
        "chunks": backlog_chunks, "bytes": backlog_bytes, "left_chunks": remaining_chunks, "left_bytes": remaining_bytes,
    }
    try:
        conn.execute(_RECORD_POKE, values)
    except psycopg.errors.UndefinedTable:
        if not conn.autocommit:
            conn.rollback()
        conn.execute(_UPDATE_RUN, values)


@dataclass(frozen=True)
class TaskInfo:
    """What Airflow knows about one mapped batch task instance (passed in by the plugin)."""

    index: int
    state: str | None
    label: str | None = None


FAILED_STATES = frozenset({"failed", "upstream_failed", "removed"})

_RUN_TEMPLATE = """
SELECT r.run_id, r.dataset, r.kind, r.window_start, r.window_end, r.state, r.planned_batches,
       r.watermark_batches, r.watermark_time, r.peak_backlog_chunks, r.peak_backlog_bytes,
       r.started_at, r.updated_at, r.finished_at, r.report, clock_timestamp(),
       l.batches, l.rows, l.last_commit, l.beyond,
       c.compressed, c.progressive, c.bytes_before, c.bytes_after,
       h.history
FROM tidemark.runs r
LEFT JOIN LATERAL (
    SELECT count(*) AS batches, coalesce(sum(rc.n), 0) AS rows, max(b.committed_at) AS last_commit,
           count(*) FILTER (WHERE b.window_start >= coalesce(r.watermark_time, r.window_start)) AS beyond
    FROM tidemark.batch_ledger b
    CROSS JOIN LATERAL (SELECT sum(value::bigint) AS n FROM jsonb_each_text(b.row_counts)) rc
    WHERE b.dataset = r.dataset AND b.run_id = r.run_id
      AND b.window_start >= r.window_start AND b.window_start < r.window_end) l ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS compressed, count(*) FILTER (WHERE phase = 'progressive') AS progressive,
           coalesce(sum(bytes_before), 0) AS bytes_before, coalesce(sum(bytes_after), 0) AS bytes_after
    FROM tidemark.compression_log WHERE run_id = r.run_id) c ON true
{history}
WHERE r.run_id = %s
"""
_HISTORY = """LEFT JOIN LATERAL (
    SELECT json_agg(json_build_array(extract(epoch FROM p.at), p.watermark_batches, extract(epoch FROM p.watermark_time),
                                     p.backlog_chunks, p.backlog_bytes, p.remaining_chunks, p.remaining_bytes,
                                     p.rows_loaded) ORDER BY p.at) AS history
    FROM tidemark.poke_history p WHERE p.run_id = r.run_id) h ON true"""
_NO_HISTORY = "CROSS JOIN (SELECT NULL::json AS history) h"
_RUN = _RUN_TEMPLATE.replace("{history}", _HISTORY)
_RUN_WITHOUT_HISTORY = _RUN_TEMPLATE.replace("{history}", _NO_HISTORY)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _history(raw: Sequence[Sequence[Any]] | None) -> list[dict[str, Any]]:
    out = []
    for at, wm, wm_time, chunks, size, left_chunks, left_bytes, rows in raw or []:
        out.append({
            "at": float(at), "watermark_batches": int(wm), "watermark_time": float(wm_time) if wm_time is not None else None,
            "backlog_chunks": int(chunks), "backlog_bytes": int(size), "remaining_chunks": int(left_chunks),
            "remaining_bytes": int(left_bytes), "rows_loaded": int(rows),
        })
    return out


def resume_instruction(kind: str) -> str:
    if kind == "catchup":
        return (
            "Nothing was published: the hypertables and the cursor are untouched. Resume: clear the failed task "
            "instances of this run (Grid: select them > Clear; only they reload, then publish runs), or trigger a new "
            "catchup with the same params (staged batches are reused)."
        )
    return (
        "Chunks from the first failed window on stay uncompressed. Resume: clear the failed task instances of this "
        "run (Grid: select them > Clear, or REST clearTaskInstances with dag_run_id and only_failed=true), or trigger "
        "a new run with the same params - loaded windows are skipped."
    )


def run_view(
    conn: psycopg.Connection,
    run_key: str,
    tasks: Sequence[TaskInfo] = (),
    *,
    staging: str | None = None,
) -> dict[str, Any] | None:
    """Everything the run's Tidemark tab shows, or None if Tidemark has no record of the run.

    ``tasks`` are the run's mapped batch task instances (states from Airflow);
    ``staging`` is a catchup's staging schema (from its plan summary).
    """
    try:
        row = conn.execute(_RUN, (run_key,)).fetchone()
    except psycopg.errors.UndefinedTable:
        try:  # bookkeeping from before the history table (created by the next run's plan)
            row = conn.execute(_RUN_WITHOUT_HISTORY, (run_key,)).fetchone()
        except psycopg.errors.UndefinedTable:  # no Tidemark run has ever planned on this database
            return None
    if row is None:
        return None
    (run_id, dataset, kind, w_start, w_end, state, planned, wm_batches, wm_time, peak_chunks, peak_bytes,
     started_at, updated_at, finished_at, report, now, loaded, rows, last_commit, beyond,
     compressed, progressive, bytes_before, bytes_after, history) = row
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
    failed = [
        {"index": t.index, "state": t.state, "window": t.label or f"batch {t.index}"}
        for t in sorted(tasks, key=lambda t: t.index) if t.state in FAILED_STATES
    ]
    view: dict[str, Any] = {
        "run_id": run_id,
        "dataset": dataset,
        "kind": kind,
        "window": {"start": _iso(w_start), "end": _iso(w_end)},
        "state": state,
        "planned_batches": planned,
        "loaded_batches": loaded,
        "watermark": {"batches": int(wm_batches), "time": _iso(wm_time)},
        "loaded_beyond_watermark": int(beyond) if kind == "backfill" else 0,
        "failed_batches": failed,
        "resume": resume_instruction(kind) if failed or state == "failed" else None,
        "rows_loaded": rows,
        "rows_per_second": round(rate) if rate else None,
        "elapsed_seconds": round(elapsed, 1),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "compression": {
            "chunks_compressed": int(compressed), "progressive": int(progressive),
            "bytes_before": int(bytes_before), "bytes_after": int(bytes_after),
        },
        "peak_backlog": {"chunks": int(peak_chunks), "bytes": int(peak_bytes)},
        "history": _history(history),
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


_RECENT = """
SELECT r.run_id, r.dataset, r.kind, r.window_start, r.window_end, r.state, r.planned_batches, r.watermark_batches,
       r.started_at, r.finished_at, r.report -> 'bytes' ->> 'ratio',
       (SELECT count(*) FROM tidemark.batch_ledger b WHERE b.dataset = r.dataset AND b.run_id = r.run_id
          AND b.window_start >= r.window_start AND b.window_start < r.window_end)
FROM tidemark.runs r ORDER BY r.started_at DESC LIMIT %s
"""


def recent_runs(conn: psycopg.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The nav page's list: every dataset's latest runs, newest first."""
    try:
        found = conn.execute(_RECENT, (limit,)).fetchall()
    except psycopg.errors.UndefinedTable:  # no Tidemark run has ever planned on this database
        return []
    out = []
    for (run_id, dataset, kind, w_start, w_end, state, planned, wm, started, finished, ratio, loaded) in found:
        dag_id, _, dag_run_id = run_id.partition("/")
        out.append({
            "run_id": run_id,
            "dag_id": dag_id if dag_run_id else None,
            "dag_run_id": dag_run_id or None,
            "dataset": dataset,
            "kind": kind,
            "window": {"start": _iso(w_start), "end": _iso(w_end)},
            "state": state,
            "planned_batches": int(planned),
            "loaded_batches": int(loaded),
            "watermark_batches": int(wm),
            "ratio": float(ratio) if ratio is not None else None,
            "started_at": _iso(started),
            "finished_at": _iso(finished),
        })
    return out
