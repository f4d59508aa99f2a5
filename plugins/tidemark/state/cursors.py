"""Per-dataset live cursors: the time up to which live ingestion (or a catchup) has loaded.

Backfill reads the cursor only to stay out of live ingestion's way: no chunk
ending after it is compressed. Catchup moves it with compare-and-swap so a
publish that raced another writer aborts instead of jumping the cursor.
"""

from __future__ import annotations

from datetime import datetime

import psycopg


def position(conn: psycopg.Connection, dataset: str) -> datetime | None:
    row = conn.execute("SELECT position FROM tidemark.cursors WHERE dataset = %s", (dataset,)).fetchone()
    return row[0] if row else None


def initialise(conn: psycopg.Connection, dataset: str, at: datetime, by: str) -> datetime:
    """Create the cursor at ``at`` unless it exists; return the cursor's position either way."""
    conn.execute(
        "INSERT INTO tidemark.cursors (dataset, position, updated_by) VALUES (%s, %s, %s) ON CONFLICT (dataset) DO NOTHING",
        (dataset, at, by),
    )
    found = position(conn, dataset)
    assert found is not None
    return found


def compare_and_swap(conn: psycopg.Connection, dataset: str, expected: datetime, new: datetime, by: str) -> bool:
    """Move the cursor from ``expected`` to ``new``; False (and nothing changed) if it was elsewhere."""
    cur = conn.execute(
        "UPDATE tidemark.cursors SET position = %s, updated_at = clock_timestamp(), updated_by = %s"
        " WHERE dataset = %s AND position = %s",
        (new, by, dataset, expected),
    )
    return cur.rowcount == 1
