"""Loading one batch window into the hypertables, replay-safe and fast.

One transaction per batch: delete the window's rows, COPY the source's rows,
record the ledger entry, commit with ``synchronous_commit = off``. The delete
makes a replay (task retry, rerun after a crash) converge instead of
duplicating; the asynchronous commit trades the last few batches' durability
for speed, which the backfill's final verification wins back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from tidemark import faults, ledger
from tidemark.connection import ConnectionFactory, DatabaseUnreachable
from tidemark.copybuffer import encode_rows
from tidemark.datasets import Dataset, Hypertable
from tidemark.planner import Batch
from tidemark.schema import table_ident

log = logging.getLogger(__name__)

# Worth another attempt: the same statement may well succeed a moment later.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseUnreachable):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = getattr(exc, "sqlstate", None)
        return state is None or state.startswith("08") or state in _TRANSIENT_SQLSTATES
    return isinstance(exc, psycopg.Error) and getattr(exc, "sqlstate", None) in _TRANSIENT_SQLSTATES


@dataclass(frozen=True)
class BatchResult:
    index: int
    start: datetime
    end: datetime
    rows: dict[str, int]
    seconds: float
    generate_seconds: float
    db_seconds: float
    attempts: int

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"] = self.start.isoformat()
        d["end"] = self.end.isoformat()
        return d


def encode_batch(dataset: Dataset, batch: Batch) -> dict[str, tuple[bytes, int]]:
    source = dataset.source()
    return {
        t.name: encode_rows(t, source.rows(t.name, batch.start, batch.end), batch.start, batch.end) for t in dataset.tables
    }


def replace_window(
    conn: psycopg.Connection,
    dataset: Dataset,
    batch: Batch,
    payloads: dict[str, tuple[bytes, int]],
    target: Callable[[Hypertable], sql.Composable] = table_ident,
) -> None:
    """Delete the window's rows and COPY the payloads, inside the caller's transaction.

    ``target`` maps each hypertable to the relation written: the hypertable
    itself, or a catchup's staging table.
    """
    with conn.cursor() as cur:
        for table in dataset.tables:
            payload, _ = payloads[table.name]
            time_col = sql.Identifier(table.time_column)
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {} >= %s AND {} < %s").format(target(table), time_col, time_col),
                (batch.start, batch.end),
            )
            if payload:
                copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    target(table), sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
                )
                with cur.copy(copy_sql) as copy:
                    half = payload.rfind(b"\n", 0, len(payload) // 2) + 1
                    copy.write(payload[:half])
                    faults.pause("insert_batch.mid_copy", batch.index)  # drills: kill the client mid-COPY
                    copy.write(payload[half:])


def row_counts(payloads: dict[str, tuple[bytes, int]]) -> dict[str, int]:
    return {name: n for name, (_, n) in payloads.items()}


def write_batch(
    conn: psycopg.Connection, dataset: Dataset, batch: Batch, payloads: dict[str, tuple[bytes, int]], run_id: str
) -> None:
    """A backfill batch's single transaction (the caller's connection must be in autocommit mode)."""
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = off")
        replace_window(conn, dataset, batch, payloads)
        faults.check("insert_batch.before_commit", batch.index)
        ledger.record(conn, dataset.name, batch.start, batch.end, row_counts(payloads), run_id)
    faults.pause("insert_batch.pause_after_commit", batch.index)
    faults.check("insert_batch.after_commit", batch.index)


Writer = Callable[[psycopg.Connection, Dataset, Batch, "dict[str, tuple[bytes, int]]", str], None]


def load_batch(
    connect: ConnectionFactory,
    dataset: Dataset,
    batch: Batch,
    run_id: str,
    *,
    attempts: int = 3,
    backoff_seconds: float = 0.5,
    writer: Writer = write_batch,
) -> BatchResult:
    """Encode the batch's rows, then write them with ``writer``, retrying transient errors.

    Encoding happens once, before any transaction: a retry re-sends the same bytes.
    """
    t0 = time.perf_counter()
    payloads = encode_batch(dataset, batch)
    t_generated = time.perf_counter()
    for attempt in range(1, attempts + 1):
        try:
            with connect() as conn:
                writer(conn, dataset, batch, payloads, run_id)
            break
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = backoff_seconds * 2 ** (attempt - 1)
            log.warning("batch %s attempt %d failed transiently (%s); retrying in %.1fs", batch.index, attempt, exc, delay)
            time.sleep(delay)
    t_done = time.perf_counter()
    return BatchResult(
        index=batch.index,
        start=batch.start,
        end=batch.end,
        rows=row_counts(payloads),
        seconds=round(t_done - t0, 3),
        generate_seconds=round(t_generated - t0, 3),
        db_seconds=round(t_done - t_generated, 3),
        attempts=attempt,
    )
