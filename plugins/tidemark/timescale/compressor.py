"""Compressing a dataset's chunks: progressively behind a watermark, then a final pass.

Only chunks lying entirely behind the watermark are safe to compress while
the load runs: every batch that could write into them has committed. The
final pass also re-runs ``compress_chunk`` on chunks already marked
compressed, because TimescaleDB keeps ``is_compressed`` true after rows land
in a compressed chunk, and those rows stay uncompressed until folded in. A
chunk that live ingestion may still write into is never touched.

Each compression runs in its own short transaction under ``lock_timeout``
(``SET LOCAL``: it never queues behind a loader for long, nor holds loaders
queued behind its own lock request) and is retried: TimescaleDB has a history
of compress/insert deadlocks, and a failure here must cost a later retry,
never the run.

Tidemark is not the only compressor. On a real server the hypertables'
compression policies run as background jobs at once, and Tidemark's own
batches and sensor compress in parallel: a chunk listed as uncompressed may
be compressed by another session before ``compress_chunk`` takes its lock,
which TimescaleDB then refuses with ``DuplicateObject: chunk ... is already
compressed`` even under ``if_not_compressed``. That, a chunk found compressed
on re-reading it, and a chunk another session is compressing right now are
all done (action ``elsewhere``); a lock timeout, deadlock or serialization
failure is retried (``race_outcome``).

Chunks written by direct-to-columnstore COPY (tidemark.timescale.columnstore) are
compressed already: ordered when the batch was their only writer and sent
its rows sorted, else flagged *unordered*. An unordered one is recompressed
when the caller asks (``recompress_unordered``: a direct run's plan does),
since a compression policy would otherwise recompress it later, racing
whatever runs then; an ordered one is left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from tidemark import faults, retrying
from tidemark.timescale.columnstore import COMPRESSED as _COMPRESSED
from tidemark.timescale.columnstore import PARTIAL as _PARTIAL
from tidemark.timescale.columnstore import UNORDERED as _UNORDERED
from tidemark.model.dataset import Dataset
from tidemark.retrying import is_transient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    hypertable: str
    schema: str
    name: str
    range_start: datetime
    range_end: datetime
    is_compressed: bool
    status: int = 0  # _timescaledb_functions.chunk_status bits

    @property
    def unordered(self) -> bool:
        """Compressed by direct COPY (or with rows appended in compressed form): batches overlap."""
        return bool(self.status & _UNORDERED)

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def behind(self, window_start: datetime, watermark: datetime) -> bool:
        return self.range_start >= window_start and self.range_end <= watermark


@dataclass(frozen=True)
class CompressionResult:
    chunk: Chunk
    action: str  # compressed | recompressed | unchanged | elsewhere (another session did it) | failed
    bytes_before: int | None
    bytes_after: int | None
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.action != "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "hypertable": self.chunk.hypertable,
            "chunk": self.chunk.name,
            "range_start": self.chunk.range_start.isoformat(),
            "range_end": self.chunk.range_end.isoformat(),
            "action": self.action,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "seconds": self.seconds,
            "error": self.error,
        }


def list_chunks(
    conn: psycopg.Connection, dataset: Dataset, start: datetime | None = None, end: datetime | None = None
) -> list[Chunk]:
    """Chunks of the dataset's hypertables intersecting [start, end), oldest first.

    One query for all hypertables: the information view costs the same for
    one table as for several (4 ms against 19 ms for three queries on the
    embedded engine), and every batch and poke asks.
    """
    by_ident = {(t.schema, t.name): t.name for t in dataset.tables}
    rows = conn.execute(
        "SELECT hypertable_schema, hypertable_name, chunk_schema, chunk_name, range_start, range_end, is_compressed,"
        " _timescaledb_functions.chunk_status(format('%%I.%%I', chunk_schema, chunk_name)::regclass)"
        " FROM timescaledb_information.chunks"
        " WHERE (hypertable_schema, hypertable_name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
        " AND (%s::timestamptz IS NULL OR range_end > %s) AND (%s::timestamptz IS NULL OR range_start < %s)",
        ([t.schema for t in dataset.tables], [t.name for t in dataset.tables], start, start, end, end),
    ).fetchall()
    chunks = [Chunk(by_ident[(r[0], r[1])], r[2], r[3], r[4], r[5], bool(r[6]), int(r[7] or 0)) for r in rows]
    chunks.sort(key=lambda c: (c.range_start, c.hypertable))
    return chunks


def eligible_behind(
    chunks: Iterable[Chunk], window_start: datetime, watermark: datetime, *, recompress_unordered: bool = False
) -> list[Chunk]:
    return [
        c for c in chunks
        if (not c.is_compressed or (recompress_unordered and c.unordered)) and c.behind(window_start, watermark)
    ]


# A chunk's bytes (heap, indexes, TOAST) plus its compressed chunk's: what chunks_detailed_size
# reports, without sizing every chunk of the hypertable to pick one out.
_SIZE_SQL = (
    "(SELECT pg_total_relation_size(format('%%I.%%I', ch.schema_name, ch.table_name)::regclass)"
    " + coalesce((SELECT pg_total_relation_size(format('%%I.%%I', cc.schema_name, cc.table_name)::regclass)"
    " FROM _timescaledb_catalog.chunk cc WHERE cc.id = ch.compressed_chunk_id), 0)"
    " FROM _timescaledb_catalog.chunk ch WHERE ch.schema_name = %s AND ch.table_name = %s)"
)


def backlog(conn: psycopg.Connection, dataset: Dataset, start: datetime, end: datetime) -> tuple[int, int]:
    """(uncompressed chunks, their bytes) intersecting the window: what a crash would leave bloated.

    One query, sizing only the uncompressed chunks (``pg_total_relation_size``
    each: what ``chunks_detailed_size`` reports as their total, at a quarter
    of its cost): the sensor calls this every poke while loaders wait for the
    (on the embedded engine, single) database session.
    """
    row = conn.execute(
        "SELECT count(*), coalesce(sum(pg_total_relation_size(format('%%I.%%I', chunk_schema, chunk_name)::regclass)), 0)"
        " FROM timescaledb_information.chunks"
        " WHERE (hypertable_schema, hypertable_name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
        " AND NOT is_compressed AND range_end > %s AND range_start < %s",
        ([t.schema for t in dataset.tables], [t.name for t in dataset.tables], start, end),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# What a failed compress_chunk means (race_outcome).
DONE = "done"  # another session compressed the chunk after we looked: it is compressed
LOOK = "look"  # lost a race for the chunk's lock: done if it turns out compressed (or being compressed) elsewhere
FAIL = "fail"  # anything else: retried only if transient (retrying.is_transient)

# Lock modes on a chunk that only compression takes (compress_chunk: ExclusiveLock; decompression, full
# recompression: AccessExclusiveLock); loaders take RowExclusiveLock, readers AccessShareLock.
_COMPRESSING_MODES = ("ExclusiveLock", "AccessExclusiveLock")


def already_compressed(exc: BaseException) -> bool:
    """TimescaleDB's refusal to compress a chunk another session compressed since we looked."""
    return isinstance(exc, psycopg.errors.DuplicateObject) and "already compressed" in str(exc)


def race_outcome(exc: BaseException) -> str:
    """How a failed compression is taken: DONE, LOOK (re-read the chunk, else retry) or FAIL."""
    if already_compressed(exc):
        return DONE
    if isinstance(exc, (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected,
                        psycopg.errors.SerializationFailure)):
        return LOOK
    return FAIL


def compressing_elsewhere(conn: psycopg.Connection, chunk: Chunk) -> str | None:
    """The other session compressing the chunk right now (its application name, or pid), or None.

    Another backend holding a lock on the chunk in a mode only compression
    takes, while running a compression (a policy job, another Tidemark task).
    """
    row = conn.execute(
        "SELECT coalesce(nullif(a.application_name, ''), 'pid ' || l.pid) FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'relation' AND l.relation = %s::regclass AND l.granted AND l.pid <> pg_backend_pid()"
        " AND l.mode = ANY(%s) AND (a.application_name ~* '(compression|columnstore)'"
        " OR a.query ~* '(compress_chunk|convert_to_columnstore|policy_compression|recompress)') LIMIT 1",
        (chunk.ident.as_string(conn), list(_COMPRESSING_MODES)),
    ).fetchone()
    return str(row[0]) if row else None


def compress(
    conn: psycopg.Connection,
    dataset: Dataset,
    chunk: Chunk,
    *,
    run_id: str | None,
    phase: str,
    lock_timeout: str = "5s",
    attempts: int = 3,
    backoff_seconds: float = 0.5,
    recompress_unordered: bool = False,
) -> CompressionResult:
    t0 = time.perf_counter()
    measured: dict[str, int | None] = {"before": None}  # the last attempt's size before, for a failed result

    def elapsed() -> float:
        return round(time.perf_counter() - t0, 3)

    def status_now() -> tuple[int, int | None]:
        row = conn.execute(
            "SELECT _timescaledb_functions.chunk_status(%s::regclass), " + _SIZE_SQL,
            (chunk.ident.as_string(conn), chunk.schema, chunk.name),
        ).fetchone()
        assert row is not None
        return int(row[0]), row[1]

    def settled(status: int) -> bool:
        # A fully compressed chunk without late rows: nothing to do. compress_chunk would be a no-op
        # for an ordered one and a full recompression for an unordered (direct-COPY) one.
        return bool(status & _COMPRESSED) and not status & _PARTIAL and not (recompress_unordered and status & _UNORDERED)

    def once() -> CompressionResult:
        status, before = status_now()
        if settled(status):
            return CompressionResult(chunk, "unchanged", None, None, elapsed())
        measured["before"] = before
        action = "compressed" if not status & _COMPRESSED else "recompressed"  # recompressed: late rows folded in
        try:
            return compress_now(action, before)
        except psycopg.Error as exc:
            outcome = race_outcome(exc)
            if outcome == FAIL or conn.closed or conn.broken:
                raise
            who = None if outcome == DONE else compressing_elsewhere(conn, chunk)
            if outcome == DONE or who is not None or settled(status_now()[0]):
                log.info("compress %s: done by another session (%s)", chunk.name,
                         who or f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
                return CompressionResult(chunk, "elsewhere", before, None, elapsed())
            raise

    def compress_now(action: str, before: int | None) -> CompressionResult:
        # One transaction per chunk, asynchronous commit: a compression lost to a crash is redone by the
        # final pass (the chunk is simply uncompressed again), and a WAL flush per chunk costs time.
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('synchronous_commit', 'off', true)",
                         (lock_timeout,))
            faults.check("compress.error", None, f'chunk "{chunk.name}" is already compressed')
            conn.execute(
                "SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk.ident.as_string(conn),)
            )
            seconds = elapsed()
            size = conn.execute("SELECT " + _SIZE_SQL, (chunk.schema, chunk.name)).fetchone()
            after = size[0] if size else None
            conn.execute(
                "INSERT INTO tidemark.compression_log (run_id, dataset, hypertable, chunk, range_start, range_end,"
                " phase, bytes_before, bytes_after, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (run_id, dataset.name, chunk.hypertable, chunk.name, chunk.range_start, chunk.range_end, phase,
                 before, after, seconds),
            )
        return CompressionResult(chunk, action, before, after, seconds)

    def worth_retrying(exc: BaseException) -> bool:
        # On a broken connection every retry would fail the same way: the caller's next pass reconnects.
        return not (conn.closed or conn.broken) and (is_transient(exc) or isinstance(exc, faults.InjectedFault))

    try:
        for attempt in retrying.policy(attempts=attempts, backoff_seconds=backoff_seconds,
                                       what=f"compress {chunk.name}", retry_if=worth_retrying):
            with attempt:
                return once()
    except Exception as exc:  # noqa: BLE001 - reported per chunk, retried by the caller's next pass
        text = str(exc).strip()
        error = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        log.warning("compress %s failed: %s", chunk.name, error)
        return CompressionResult(chunk, "failed", measured["before"], None, elapsed(), error)
    raise AssertionError("unreachable: the retry policy either returns or raises")


def compress_behind(
    conn: psycopg.Connection,
    dataset: Dataset,
    window_start: datetime,
    watermark: datetime,
    *,
    run_id: str | None,
    recompress_unordered: bool = False,
    **options: Any,
) -> list[CompressionResult]:
    """Compress every uncompressed chunk lying entirely in [window_start, watermark).

    Chunks that direct COPY wrote compressed are recorded in the compression
    log (once per run, action-free: no compress_chunk ran) so the report can
    say they were compressed while the load ran; with ``recompress_unordered``
    they are recompressed instead.
    """
    chunks = list_chunks(conn, dataset, window_start, watermark)
    todo = eligible_behind(chunks, window_start, watermark, recompress_unordered=recompress_unordered)
    results = [
        compress(conn, dataset, c, run_id=run_id, phase="progressive", recompress_unordered=recompress_unordered, **options)
        for c in todo
    ]
    direct = [c for c in chunks if c.is_compressed and c.unordered and c.behind(window_start, watermark) and c not in todo]
    if direct and run_id is not None:
        _log_direct(conn, dataset, direct, run_id)
    return results


def log_direct(conn: psycopg.Connection, dataset: Dataset, start: datetime, end: datetime, run_id: str) -> int:
    """Record the chunks a direct COPY into [start, end) left compressed (once per chunk and run)."""
    chunks = [c for c in list_chunks(conn, dataset, start, end) if c.is_compressed and c.unordered]
    if chunks:
        _log_direct(conn, dataset, chunks, run_id)
    return len(chunks)


def _log_direct(conn: psycopg.Connection, dataset: Dataset, chunks: list[Chunk], run_id: str) -> None:
    # Asynchronous like the batch it follows: a synchronous commit here would flush every
    # asynchronous batch commit before it, for a log row finalize can do without.
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = off")
        _insert_direct(conn, dataset, chunks, run_id)


def _insert_direct(conn: psycopg.Connection, dataset: Dataset, chunks: list[Chunk], run_id: str) -> None:
    conn.execute(
        "INSERT INTO tidemark.compression_log (run_id, dataset, hypertable, chunk, range_start, range_end, phase, seconds)"
        " SELECT %s, %s, h, c, s, e, 'progressive', 0"
        " FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS u(h, c, s, e)"
        " WHERE NOT EXISTS (SELECT 1 FROM tidemark.compression_log l WHERE l.run_id = %s AND l.chunk = u.c)",
        (run_id, dataset.name, [c.hypertable for c in chunks], [c.name for c in chunks],
         [c.range_start for c in chunks], [c.range_end for c in chunks], run_id),
    )


def final_pass(
    conn: psycopg.Connection,
    dataset: Dataset,
    window_start: datetime,
    window_end: datetime,
    *,
    run_id: str | None,
    live_horizon: datetime | None = None,
    recompress_unordered: bool = False,
    **options: Any,
) -> tuple[list[CompressionResult], list[Chunk]]:
    """Compress or fold late rows into every chunk intersecting the window.

    Returns (results, chunks left alone because live ingestion may still write
    into them: those ending after ``live_horizon``).
    """
    results: list[CompressionResult] = []
    skipped: list[Chunk] = []
    for chunk in list_chunks(conn, dataset, window_start, window_end):
        if live_horizon is not None and chunk.range_end > live_horizon:
            skipped.append(chunk)
            continue
        settled = chunk.status & _COMPRESSED and not chunk.status & _PARTIAL
        if settled and not (recompress_unordered and chunk.unordered):  # status read with the list: no round trip
            results.append(CompressionResult(chunk, "unchanged", None, None, 0.0))
            continue
        results.append(compress(conn, dataset, chunk, run_id=run_id, phase="final",
                                recompress_unordered=recompress_unordered, **options))
    return results, skipped
