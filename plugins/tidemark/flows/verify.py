"""Checking that what the ledger claims is really in the hypertables.

The loader commits asynchronously; after an engine crash the last commits are
gone, rows and ledger entries together. Verification therefore checks both
directions: every window of the load is covered by ledger entries, and each
entry's row counts equal the rows in the tables for its window (and, when the
source can tell, the source's own expected counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from tidemark.state import ledger
from tidemark.connection import one
from tidemark.sources import base as sources
from tidemark.model.dataset import Dataset
from tidemark.timescale.schema import table_ident


@dataclass(frozen=True)
class Mismatch:
    start: datetime
    end: datetime
    table: str
    ledger_rows: int | None
    table_rows: int
    expected_rows: int | None

    def describe(self) -> str:
        return (
            f"[{self.start.isoformat()}, {self.end.isoformat()}) {self.table}: ledger {self.ledger_rows}, "
            f"table {self.table_rows}, source {self.expected_rows}"
        )


@dataclass
class Verification:
    uncovered: list[tuple[datetime, datetime]] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    entries: int = 0
    source_counted: set[str] = field(default_factory=set)  # tables whose source gave its own count

    @property
    def ok(self) -> bool:
        return not self.uncovered and not self.mismatches


def window_counts(
    conn: psycopg.Connection, dataset: Dataset, windows: Sequence[tuple[datetime, datetime]]
) -> list[dict[str, int]]:
    """Rows per table in each window: one scan per table over the windows' span, whatever their number.

    Rows are counted per elementary interval between the sorted window
    boundaries (``width_bucket``), and each window sums its intervals: exact
    for any set of windows, and it reads each (compressed) chunk once instead
    of once per window.
    """
    out: list[dict[str, int]] = [{} for _ in windows]
    if not windows:
        return out
    bounds = sorted({t for w in windows for t in w})
    position = {t: i for i, t in enumerate(bounds)}
    for table in dataset.tables:
        t = sql.Identifier(table.time_column)
        q = sql.SQL(
            "SELECT width_bucket({t}, %s::timestamptz[]) AS b, count(*) FROM {tbl}"
            " WHERE {t} >= %s AND {t} < %s GROUP BY b"
        ).format(t=t, tbl=table_ident(table))
        per_bucket: dict[int, int] = dict(conn.execute(q, (bounds, bounds[0], bounds[-1])).fetchall())
        for k, (start, end) in enumerate(windows):
            # Bucket b holds [bounds[b-1], bounds[b]).
            out[k][table.name] = sum(per_bucket.get(b, 0) for b in range(position[start] + 1, position[end] + 1))
    return out


def verify(
    conn: psycopg.Connection, dataset: Dataset, windows: Sequence[tuple[datetime, datetime]]
) -> Verification:
    """Verify that every window is covered by ledger entries whose counts match the tables."""
    result = Verification()
    if not windows:
        return result
    start = min(w[0] for w in windows)
    end = max(w[1] for w in windows)
    entries = ledger.entries(conn, dataset.name, start, end)
    result.entries = len(entries)
    for w in windows:
        if not _covered(w, [(e.start, e.end) for e in entries]):
            result.uncovered.append(w)
    actual = window_counts(conn, dataset, [(e.start, e.end) for e in entries])
    for entry, counts in zip(entries, actual):
        expected = source_counts(dataset, entry.start, entry.end)
        result.source_counted.update(expected)
        for table in dataset.tables:
            claimed = entry.row_counts.get(table.name)
            have = counts.get(table.name, 0)
            want = expected.get(table.name) if expected else None
            if claimed != have or (want is not None and want != have):
                result.mismatches.append(Mismatch(entry.start, entry.end, table.name, claimed, have, want))
    return result


def source_counts(dataset: Dataset, start: datetime, end: datetime) -> dict[str, int]:
    """Rows per table in the window by the sources' own count, for the tables whose source can count."""
    out: dict[str, int] = {}
    for source, tables in dataset.feeds():
        counted = sources.expected_counts(source, tables, start, end)
        if counted:
            out.update(counted)
    return out


def _covered(window: tuple[datetime, datetime], spans: list[tuple[datetime, datetime]]) -> bool:
    pos = window[0]
    for s, e in sorted(spans):
        if s > pos:
            break
        if e > pos:
            pos = e
        if pos >= window[1]:
            return True
    return pos >= window[1]


def checksum(conn: psycopg.Connection, dataset: Dataset, start: datetime, end: datetime) -> dict[str, tuple[int, str]]:
    """(row count, md5 of every row in key order) per table in [start, end): the "same rows" oracle.

    Rows are compared by value, so two loads into different schemas (a backfill
    and a catchup, or a faulted run and a clean one) can be checked for equality.
    """
    out: dict[str, tuple[int, str]] = {}
    for table in dataset.tables:
        t = sql.Identifier(table.time_column)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
        q = sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg(r::text, E'\\n' ORDER BY r::text)), '') FROM"
            " (SELECT ROW({cols}) AS r FROM {tbl} WHERE {t} >= %s AND {t} < %s) x"
        ).format(cols=cols, tbl=table_ident(table), t=t)
        n, digest = one(conn.execute(q, (start, end)))
        out[table.name] = (int(n), digest)
    return out
