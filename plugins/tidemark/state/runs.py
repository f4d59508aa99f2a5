"""A load run's claim on a dataset window, its progress, its attempts and its batches' failures.

The claim lets a second run over an overlapping window refuse up front,
naming the first, instead of two runs deleting and re-inserting each other's
windows. A claim whose run stopped reporting progress for ``STALE_AFTER`` is
treated as abandoned (its worker died without reaching finalize), so a dead
run cannot block a dataset forever.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tidemark.errors import InvalidInput

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=30)
_CLAIM_LOCK = 0x7469_6466  # serialises claims across all datasets; claims are rare


class RunConflict(InvalidInput):
    """Another run is loading an overlapping window of the same dataset: the same request would only meet it again."""


def claim(
    conn: psycopg.Connection,
    run_id: str,
    dataset: str,
    kind: str,
    start: datetime,
    end: datetime,
    planned_batches: int,
    alive: Callable[[str], bool] = lambda run_id: True,
) -> None:
    """Claim the window for ``run_id`` or raise RunConflict naming the live rival.

    ``alive`` lets the orchestrator vouch for a rival: a run it knows has
    ended (failed, killed, deleted) loses its claim at once instead of after
    ``STALE_AFTER``, so "trigger a new run with the same params" resumes a
    crashed run immediately.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CLAIM_LOCK,))
        found = conn.execute(
            "SELECT run_id, kind, window_start, window_end, updated_at FROM tidemark.runs"
            " WHERE dataset = %s AND state = 'running' AND run_id <> %s"
            " AND window_start < %s AND window_end > %s AND updated_at > clock_timestamp() - %s::interval",
            (dataset, run_id, end, start, STALE_AFTER),
        ).fetchall()
        rivals = []
        for rival in found:
            if alive(rival[0]):
                rivals.append(rival)
            else:
                conn.execute("UPDATE tidemark.runs SET state = 'abandoned', updated_at = clock_timestamp() WHERE run_id = %s",
                             (rival[0],))
        if rivals:
            r = rivals[0]
            raise RunConflict(
                f"dataset {dataset!r} window [{start.isoformat()}, {end.isoformat()}) overlaps {r[1]} run {r[0]!r} "
                f"loading [{r[2].isoformat()}, {r[3].isoformat()}) (last progress {r[4].isoformat()}). "
                "Wait for it to finish, or pick a window that does not overlap. A run that shows no progress "
                f"for {int(STALE_AFTER.total_seconds() // 60)} minutes is treated as abandoned."
            )
        # A run id that already ended (succeeded, failed, abandoned) is planned again: a new attempt. The ended one is
        # kept whole in runs_history and its plot history goes; a plan retried while its attempt runs stays that attempt.
        archived = conn.execute(
            "INSERT INTO tidemark.runs_history (run_id, attempt, dataset, kind, window_start, window_end, state,"
            " planned_batches, watermark_batches, peak_backlog_chunks, peak_backlog_bytes, started_at, finished_at, report)"
            " SELECT run_id, attempt, dataset, kind, window_start, window_end, state, planned_batches, watermark_batches,"
            " peak_backlog_chunks, peak_backlog_bytes, started_at, finished_at, report"
            " FROM tidemark.runs WHERE run_id = %s AND state <> 'running'"
            " ON CONFLICT (run_id, attempt) DO NOTHING RETURNING attempt",
            (run_id,),
        ).fetchone()
        if archived:
            conn.execute("DELETE FROM tidemark.poke_history WHERE run_id = %s", (run_id,))
        conn.execute(
            "INSERT INTO tidemark.runs AS r (run_id, dataset, kind, window_start, window_end, planned_batches)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (run_id) DO UPDATE SET state = 'running', dataset = EXCLUDED.dataset, kind = EXCLUDED.kind,"
            " window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,"
            " planned_batches = EXCLUDED.planned_batches, finished_at = NULL, updated_at = clock_timestamp(),"
            " attempt = CASE WHEN r.state = 'running' THEN r.attempt ELSE r.attempt + 1 END,"
            " started_at = CASE WHEN r.state = 'running' THEN r.started_at ELSE clock_timestamp() END,"
            " report = CASE WHEN r.state = 'running' THEN r.report END,"
            " watermark_batches = CASE WHEN r.state = 'running' THEN r.watermark_batches ELSE 0 END,"
            " watermark_time = CASE WHEN r.state = 'running' THEN r.watermark_time END,"
            " peak_backlog_chunks = CASE WHEN r.state = 'running' THEN r.peak_backlog_chunks ELSE 0 END,"
            " peak_backlog_bytes = CASE WHEN r.state = 'running' THEN r.peak_backlog_bytes ELSE 0 END,"
            " last_batch_end_at = CASE WHEN r.state = 'running' THEN r.last_batch_end_at END",
            (run_id, dataset, kind, start, end, planned_batches),
        )


FAILURE_TEXT_MAX = 300
_URI = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*\S+")


def failure_text(exc: BaseException) -> str:
    """One line for the run's tab: the error's type and its first line, never a secret or a row.

    A connection failure says only that (its text names hosts and ports);
    other errors keep their first line (a failing row's values are on later
    lines of a database error), with URIs and ``password=...`` masked, cut to
    ``FAILURE_TEXT_MAX`` characters. The task log has the rest.
    """
    name = type(exc).__name__
    if isinstance(exc, (psycopg.OperationalError, OSError)):
        return f"{name}: the database connection failed (the task log has the details)"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = _SECRET.sub(lambda m: f"{m.group(1)}=***", _URI.sub("<uri>", lines[0] if lines else ""))
    text = f"{name}: {first}" if first else name
    return text if len(text) <= FAILURE_TEXT_MAX else text[: FAILURE_TEXT_MAX - 1] + "…"


def record_failure(conn: psycopg.Connection, run_id: str, batch_index: int, try_number: int, error: str) -> None:
    """Keep a batch try's error line for the run's tab (the run's current attempt; a repeated try replaces it)."""
    conn.execute(
        "INSERT INTO tidemark.batch_failures (run_id, attempt, batch_index, try_number, error)"
        " SELECT %s, coalesce((SELECT attempt FROM tidemark.runs WHERE run_id = %s), 1), %s, %s, %s"
        " ON CONFLICT (run_id, attempt, batch_index, try_number) DO UPDATE SET error = EXCLUDED.error,"
        " failed_at = clock_timestamp()",
        (run_id, run_id, batch_index, try_number, error),
    )


def note_failure(connect: Callable[[], psycopg.Connection], run_id: str, batch_index: int, try_number: int,
                 exc: BaseException) -> None:
    """``record_failure`` in a connection of its own, never raising: the task fails with its own error either way."""
    try:
        with connect() as conn:
            record_failure(conn, run_id, batch_index, try_number, failure_text(exc))
    except Exception as problem:  # noqa: BLE001 - a second failure must not hide the first
        log.warning("could not record batch %d's failure for the Tidemark tab: %s", batch_index, type(problem).__name__)


def heartbeat(conn: psycopg.Connection, run_id: str) -> None:
    """Mark the claim as alive again (a resumed run re-asserts it)."""
    conn.execute(
        "UPDATE tidemark.runs SET state = 'running', updated_at = clock_timestamp(), finished_at = NULL WHERE run_id = %s",
        (run_id,),
    )


def finish(conn: psycopg.Connection, run_id: str, state: str, report: Mapping[str, Any] | None = None) -> None:
    """Close the claim. Runs with ``synchronous_commit = on``: this commit makes every earlier asynchronous one durable."""
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute(
            "UPDATE tidemark.runs SET state = %s, report = %s, finished_at = clock_timestamp(),"
            " updated_at = clock_timestamp() WHERE run_id = %s",
            (state, Jsonb(report) if report is not None else None, run_id),
        )


def make_durable(conn: psycopg.Connection, run_id: str) -> None:
    """One synchronous commit flushes the WAL of every earlier asynchronous commit."""
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute("UPDATE tidemark.runs SET updated_at = clock_timestamp() WHERE run_id = %s", (run_id,))
