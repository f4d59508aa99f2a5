"""The runs page's list: every dataset's runs, each earlier attempt of a run id as a row of its own, newest first.

A rerun under the same run id is a new attempt (``tidemark.state.runs.claim``):
``tidemark.runs`` holds the latest, ``tidemark.runs_history`` the earlier
ones with their reports. One autocommit statement per read, as for the tab.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

__all__ = ["datasets_with_runs", "recent_runs"]


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


_RECENT_COLUMNS = """run_id, dataset, kind, window_start, window_end, state, planned_batches, {wm}, started_at, finished_at,
       coalesce(report -> 'bytes' ->> 'storage_ratio', report -> 'bytes' ->> 'ratio'),
       coalesce(report -> 'bytes' ->> 'stored', report -> 'bytes' ->> 'after_compression'),
       report -> 'batches' ->> 'loaded', {attempt}"""
# The latest attempt of every run id (with its ledger progress) and every earlier attempt (from its report), newest
# first; filtered by dataset and state when asked.
_RECENT = """
SELECT * FROM (
    SELECT """ + _RECENT_COLUMNS.format(wm="r.watermark_batches", attempt="r.attempt").replace("run_id,", "r.run_id,", 1) + """,
           (SELECT count(*) FROM tidemark.batch_ledger b WHERE b.dataset = r.dataset AND b.run_id = r.run_id
              AND b.committed_at >= r.started_at AND b.window_start >= r.window_start AND b.window_start < r.window_end),
           true AS latest
    FROM tidemark.runs r
    UNION ALL
    SELECT """ + _RECENT_COLUMNS.format(wm="watermark_batches", attempt="attempt") + """, NULL, false
    FROM tidemark.runs_history
) x
WHERE (%(dataset)s::text IS NULL OR dataset = %(dataset)s) AND (%(state)s::text IS NULL OR state = %(state)s)
ORDER BY started_at DESC LIMIT %(limit)s
"""
_RECENT_LEGACY = """
SELECT """ + _RECENT_COLUMNS.format(wm="r.watermark_batches", attempt="1").replace("run_id,", "r.run_id,", 1) + """,
       (SELECT count(*) FROM tidemark.batch_ledger b WHERE b.dataset = r.dataset AND b.run_id = r.run_id
          AND b.window_start >= r.window_start AND b.window_start < r.window_end), true
FROM tidemark.runs r
WHERE (%(dataset)s::text IS NULL OR dataset = %(dataset)s) AND (%(state)s::text IS NULL OR state = %(state)s)
ORDER BY started_at DESC LIMIT %(limit)s
"""


def recent_runs(conn: psycopg.Connection, limit: int = 50, *, dataset: str | None = None,
                state: str | None = None) -> list[dict[str, Any]]:
    """The nav page's list: every dataset's latest runs and their earlier attempts, newest first."""
    values = {"limit": limit, "dataset": dataset or None, "state": state or None}
    try:
        found = conn.execute(_RECENT, values).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        try:  # bookkeeping from before attempts were kept
            found = conn.execute(_RECENT_LEGACY, values).fetchall()
        except psycopg.errors.UndefinedTable:  # no Tidemark run has ever planned on this database
            return []
    out = []
    for (run_id, ds, kind, w_start, w_end, run_state, planned, wm, started, finished, ratio, stored, reported_loaded,
         attempt, ledger_loaded, latest) in found:
        dag_id, _, dag_run_id = run_id.partition("/")
        loaded = ledger_loaded if latest else reported_loaded
        out.append({
            "run_id": run_id,
            "attempt": int(attempt),
            "latest_attempt": bool(latest),
            "dag_id": dag_id if dag_run_id else None,
            "dag_run_id": dag_run_id or None,
            "dataset": ds,
            "kind": kind,
            "window": {"start": _iso(w_start), "end": _iso(w_end)},
            "state": run_state,
            "planned_batches": int(planned),
            "loaded_batches": int(loaded or 0),
            "watermark_batches": int(wm),
            "ratio": float(ratio) if ratio is not None else None,
            "stored_bytes": int(stored) if stored is not None and int(stored) > 0 else None,
            "started_at": _iso(started),
            "finished_at": _iso(finished),
        })
    return out


def datasets_with_runs(conn: psycopg.Connection) -> list[str]:
    """Every dataset any run (or earlier attempt) loaded: the runs page's filter."""
    try:
        return [r[0] for r in conn.execute(
            "SELECT dataset FROM tidemark.runs UNION SELECT dataset FROM tidemark.runs_history ORDER BY 1").fetchall()]
    except psycopg.errors.UndefinedTable:
        try:
            return [r[0] for r in conn.execute("SELECT DISTINCT dataset FROM tidemark.runs ORDER BY 1").fetchall()]
        except psycopg.errors.UndefinedTable:
            return []
