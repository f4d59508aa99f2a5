"""A load run's claim on a dataset window, and its progress.

The claim lets a second run over an overlapping window refuse up front,
naming the first, instead of two runs deleting and re-inserting each other's
windows. A claim whose run stopped reporting progress for ``STALE_AFTER`` is
treated as abandoned (its worker died without reaching finalize), so a dead
run cannot block a dataset forever.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tidemark.errors import InvalidInput

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
        conn.execute(
            "INSERT INTO tidemark.runs (run_id, dataset, kind, window_start, window_end, planned_batches)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (run_id) DO UPDATE SET state = 'running', dataset = EXCLUDED.dataset, kind = EXCLUDED.kind,"
            " window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,"
            " planned_batches = EXCLUDED.planned_batches, finished_at = NULL, updated_at = clock_timestamp()",
            (run_id, dataset, kind, start, end, planned_batches),
        )


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
