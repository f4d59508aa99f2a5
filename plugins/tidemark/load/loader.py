"""Loading one batch window into the hypertables, replay-safe and fast.

The window is read from its sources and encoded first, into spools (see
``tidemark.load.encoding``), outside any transaction: the source is read once
however often the write is retried, and the target is held only while the
bytes stream in. Then one transaction per batch: delete the window's rows,
COPY the payloads, record the ledger entry, commit with
``synchronous_commit = off``. The delete makes a replay (task retry, rerun
after a crash) converge instead of duplicating; the asynchronous commit
trades the last few batches' durability for speed, which the backfill's
final verification wins back.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from tidemark import faults, retrying
from tidemark.state import ledger, owners
from tidemark.connection import ConnectionFactory
from tidemark.model.dataset import Dataset, Hypertable
from tidemark.errors import BadRow
from tidemark.load.encoding import encode_window
from tidemark.load.spool import Payload, TablePayloads
from tidemark.load.table_window import place
from tidemark.model.origin import SHOWN
from tidemark.model.batch import Batch
from tidemark.timescale import columnstore
from tidemark.timescale.columnstore import ChunkOrder
from tidemark.timescale.schema import resolve, table_ident

log = logging.getLogger(__name__)

Staged = dict[str, TablePayloads]

class ValueRefused(BadRow):
    """The database refused a value the source produced (bad syntax, out of range, too long)."""


# The context of an error in COPY: 'COPY readings, line 7, column v: "abc"' (the value quoted whole, or a whole line).
_COPY_CONTEXT = re.compile(r'^COPY (?P<rel>.+?), line (?P<line>\d+)(?:, column (?P<column>[^:]+?))?(?:: (?P<value>.*))?$', re.S)
_QUOTED = re.compile(r'"((?:[^"]|"")*)"', re.S)


def _cut_quoted(text: str) -> str:
    """``text`` with every double-quoted value in it cut to a few dozen characters."""
    return _QUOTED.sub(lambda m: m.group(0) if len(m.group(1)) <= SHOWN else f'"{m.group(1)[:SHOWN]}…"', text)


def _refused_value(payload: Payload, message: str, context: str | None) -> str:
    """What the server refused, and where it came from: the COPY line mapped back through the spool to the source."""
    text = _cut_quoted(message)
    m = _COPY_CONTEXT.match(context.strip()) if context else None
    if m is None:
        return f"the database refused a value: {text}"
    line = int(m.group("line"))
    seg = payload.row(payload.row_at_line(line))
    where = place(seg.origin, seg.piece_index, seg.window_row) if seg else f"COPY line {line}"
    column, value = m.group("column"), m.group("value")
    if column is None:  # about the whole line, which is never quoted
        return f"{where}: the database refused it: {text}"
    shown = "" if value is None else f": {_cut_quoted(value)}" if value.startswith('"') else f": {value[:SHOWN]}"
    return f"{where}: the database refused column {column}{shown}: {text}"


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


_DONE = object()


def _prefetched(pieces: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """The pieces, read by a thread of their own up to ``depth`` ahead of the consumer.

    The source's next fetch (a cursor's round trip, a Parquet row group's
    decompression: both release the GIL) then overlaps the encoding of the
    piece before it, while memory stays bounded by ``depth`` pieces. An error
    on either side stops both.
    """
    out: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: Any) -> bool:
        """Put ``item`` in the queue unless the consumer stopped first; True if it was put."""
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(pieces)
        try:
            for piece in it:
                if not hand_over(piece):
                    break
            item: Any = _DONE
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            item = exc
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # a generator's finally blocks (cursors, files) run in the thread that ran it
        hand_over(item)

    reader = threading.Thread(target=produce, name="tidemark-source-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join(timeout=30)


@contextmanager
def staged_window(dataset: Dataset, batch: Batch, orders: Mapping[str, ChunkOrder] | None = None) -> Iterator[Staged]:
    """Read and encode every source of the dataset for the window; the spools live while the block runs.

    ``orders``: tables to frame sorted in their chunk order (``columnstore.sorted_tables``).
    """
    staged: Staged = {}
    try:
        for source, tables in dataset.feeds():
            pieces = _prefetched(source.read(tables, batch.start, batch.end))
            staged.update(encode_window(dataset.name, tables, pieces, batch.start, batch.end, orders))
        yield staged
    finally:
        for payloads in staged.values():
            payloads.close()


def _copy_statement(target: sql.Composable, table: Hypertable, fmt: str) -> sql.Composed:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    options = sql.SQL(" (FORMAT {})").format(sql.SQL(fmt)) if fmt in ("csv", "binary") else sql.SQL("")
    return sql.SQL("COPY {} ({}) FROM STDIN{}").format(target, cols, options)


def replace_window(
    conn: psycopg.Connection,
    dataset: Dataset,
    batch: Batch,
    staged: Staged,
    target: Callable[[Hypertable], sql.Composable] = table_ident,
) -> None:
    """Delete the window's rows and COPY the staged payloads, inside the caller's transaction.

    ``target`` maps each hypertable to the relation written: the hypertable
    itself, or a catchup's staging table. A table whose payload was framed
    sorted is copied with client-sorted direct COPY, which leaves its chunks
    ordered; every other table of the batch without it.
    """
    any_sorted = any(p.sorted for p in staged.values())
    with conn.cursor() as cur:
        for table in dataset.tables:
            time_col = sql.Identifier(table.time_column)
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {} >= %s AND {} < %s").format(target(table), time_col, time_col),
                (batch.start, batch.end),
            )
            if any_sorted:  # read by each COPY as it starts; local to the batch's transaction
                cur.execute("SELECT set_config(%s, %s, true)",
                            (columnstore.CLIENT_SORTED_GUC, "on" if staged[table.name].sorted else "off"))
            for payload in staged[table.name].parts.values():
                if not payload.rows:
                    continue
                piece = max(64 * 1024, min(1024 * 1024, payload.size // 2 + 1))
                try:
                    with cur.copy(_copy_statement(target(table), table, payload.format)) as copy:
                        for n, chunk in enumerate(payload.chunks(piece)):
                            copy.write(chunk)
                            if n == 0:
                                faults.pause("insert_batch.mid_copy", batch.index)  # drills: kill the client mid-COPY
                except psycopg.errors.DataError as exc:
                    diag = exc.diag
                    raise ValueRefused(
                        f"dataset {dataset.name!r}, table {table.qualified}, window [{batch.start.isoformat()}, "
                        f"{batch.end.isoformat()}): {_refused_value(payload, diag.message_primary or '', diag.context)}"
                        "; nothing of this batch was written"
                    ) from None
                except psycopg.errors.IntegrityError as exc:
                    exc.add_note(f"dataset {dataset.name!r}, table {table.qualified}, window "
                                 f"[{batch.start.isoformat()}, {batch.end.isoformat()})")
                    raise


def row_counts(staged: Staged) -> dict[str, int]:
    return {name: payloads.rows for name, payloads in staged.items()}


def write_batch(conn: psycopg.Connection, dataset: Dataset, batch: Batch, staged: Staged, run_id: str) -> None:
    """A backfill batch's single transaction (the caller's connection must be in autocommit mode)."""
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = off")
        if dataset.direct_compress:  # resolved at plan time (tidemark.timescale.columnstore)
            conn.execute("SET LOCAL timescaledb.enable_direct_compress_copy = on")
        owners.check(conn, dataset.name, dataset.tables, run_id)  # before the DELETE: another dataset's rows stay
        replace_window(conn, dataset, batch, staged)
        faults.check("insert_batch.before_commit", batch.index)
        ledger.record(conn, dataset.name, batch.start, batch.end, row_counts(staged), run_id)
    faults.pause("insert_batch.pause_after_commit", batch.index)
    faults.check("insert_batch.after_commit", batch.index)


Writer = Callable[[psycopg.Connection, Dataset, Batch, Staged, str], None]


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
    """Read and encode the batch's rows, then write them with ``writer``, retrying transient errors.

    Reading happens once, before any transaction: a retry re-sends the same bytes.
    """
    t0 = time.perf_counter()
    orders: dict[str, ChunkOrder] = {}
    if not dataset.resolved or dataset.direct_compress:
        with connect() as conn:
            dataset = resolve(conn, dataset) if not dataset.resolved else dataset
            orders = columnstore.sorted_tables(conn, dataset, batch.start, batch.end)
    with staged_window(dataset, batch, orders) as staged:
        t_generated = time.perf_counter()
        attempt = 0
        for try_ in retrying.policy(attempts=attempts, backoff_seconds=backoff_seconds, what=f"batch {batch.index}"):
            with try_:
                attempt = try_.retry_state.attempt_number
                with connect() as conn:
                    writer(conn, dataset, batch, staged, run_id)
        counts = row_counts(staged)
    t_done = time.perf_counter()
    return BatchResult(
        index=batch.index,
        start=batch.start,
        end=batch.end,
        rows=counts,
        seconds=round(t_done - t0, 3),
        generate_seconds=round(t_generated - t0, 3),
        db_seconds=round(t_done - t_generated, 3),
        attempts=attempt,
    )
