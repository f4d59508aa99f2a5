"""The batch ledger: which windows of a dataset are loaded, and with how many rows.

An entry is written in the same transaction as the batch's rows, so it is
exactly as durable as they are; after a crash that lost asynchronous commits,
the ledger and the data are lost together and the window is simply planned
again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True)
class LedgerEntry:
    dataset: str
    start: datetime
    end: datetime
    row_counts: dict[str, int]
    run_id: str
    committed_at: datetime


def entries(conn: psycopg.Connection, dataset: str, start: datetime, end: datetime) -> list[LedgerEntry]:
    """Entries overlapping [start, end), in time order."""
    rows = conn.execute(
        "SELECT dataset, window_start, window_end, row_counts, run_id, committed_at FROM tidemark.batch_ledger"
        " WHERE dataset = %s AND window_start < %s AND window_end > %s ORDER BY window_start",
        (dataset, end, start),
    ).fetchall()
    return [LedgerEntry(r[0], r[1], r[2], dict(r[3]), r[4], r[5]) for r in rows]


def loaded_windows(conn: psycopg.Connection, dataset: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    return [(e.start, e.end) for e in entries(conn, dataset, start, end)]


def record(
    conn: psycopg.Connection, dataset: str, start: datetime, end: datetime, row_counts: dict[str, int], run_id: str
) -> None:
    """Claim [start, end) for the caller's open transaction, replacing overlapping entries.

    The caller has just replaced every row of the window, so any older entry
    overlapping it no longer describes what is in the tables.
    """
    conn.execute(
        "DELETE FROM tidemark.batch_ledger WHERE dataset = %s AND window_start < %s AND window_end > %s",
        (dataset, end, start),
    )
    conn.execute(
        "INSERT INTO tidemark.batch_ledger (dataset, window_start, window_end, row_counts, run_id)"
        " VALUES (%s, %s, %s, %s::jsonb, %s)",
        (dataset, start, end, json.dumps(row_counts, sort_keys=True), run_id),
    )
