"""The core library against a real TimescaleDB: schema, loader, ledger, compressor."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg import sql

from tests.conftest import NO_DUPLICATES, duplicate_keys, rows_in
from tidemark.timescale import compressor, policies
from tidemark.state import ledger
from tidemark.connection import factory
from tidemark.model.dataset import Dataset
from tidemark.sources import PythonSource
from tidemark.load.loader import load_batch
from tidemark.model.batch import Batch
from tidemark.flows.plan import plan_batches
from tidemark.timescale.schema import ensure_schema, table_ident
from tidemark.flows.verify import source_counts

UTC = timezone.utc
T0 = datetime(2024, 3, 1, tzinfo=UTC)


def test_ensure_schema_is_idempotent(conn: psycopg.Connection, dataset: Dataset) -> None:
    ensure_schema(conn, dataset)
    ensure_schema(conn, dataset)
    rows = conn.execute(
        "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_schema = %s",
        (dataset.tables[0].schema,),
    ).fetchall()
    assert sorted(rows) == [("ledgers", True), ("operations", True), ("transactions", True)]
    seg = conn.execute(
        "SELECT attname FROM timescaledb_information.compression_settings"
        " WHERE hypertable_schema = %s AND hypertable_name = 'operations' AND segmentby_column_index IS NOT NULL",
        (dataset.tables[0].schema,),
    ).fetchall()
    assert seg == [("op_type",)]
    jobs = conn.execute(
        "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' AND hypertable_schema = %s",
        (dataset.tables[0].schema,),
    ).fetchone()[0]
    assert jobs == 3


def test_load_and_replay_gives_exact_rows_without_duplicates(dsn: str, conn: psycopg.Connection, dataset: Dataset) -> None:
    batch = Batch(0, T0, T0 + timedelta(hours=2))
    expected = source_counts(dataset, batch.start, batch.end)
    first = load_batch(factory(dsn), dataset, batch, "run-a")
    assert first.rows == expected
    assert rows_in(conn, dataset, batch.start, batch.end) == expected
    again = load_batch(factory(dsn), dataset, batch, "run-b")
    assert again.rows == expected
    assert rows_in(conn, dataset, batch.start, batch.end) == expected
    assert duplicate_keys(conn, dataset) == NO_DUPLICATES
    entries = ledger.entries(conn, dataset.name, T0, T0 + timedelta(days=1))
    assert [(e.start, e.end, e.row_counts, e.run_id) for e in entries] == [(batch.start, batch.end, expected, "run-b")]
    # A batch of a few hours is far above 64 KiB of COPY data.
    assert sum(expected.values()) > 10_000


def test_planner_skips_windows_the_ledger_records(dsn: str, conn: psycopg.Connection, dataset: Dataset) -> None:
    plan = plan_batches(T0, T0 + timedelta(hours=4), "1 hour")
    load_batch(factory(dsn), dataset, plan.batches[1], "run")
    again = plan_batches(T0, T0 + timedelta(hours=4), "1 hour", loaded=ledger.loaded_windows(conn, dataset.name, T0, T0 + timedelta(hours=4)))
    assert [b.start for b in again.batches] == [T0, T0 + timedelta(hours=2), T0 + timedelta(hours=3)]
    assert [b.index for b in again.batches] == [0, 1, 2]


def load_range(dsn: str, ds: Dataset, start: datetime, end: datetime, step: str) -> None:
    for b in plan_batches(start, end, step).batches:
        load_batch(factory(dsn), ds, b, "run")


def test_compress_behind_watermark_leaves_straddling_chunks(dsn: str, conn: psycopg.Connection, dataset: Dataset) -> None:
    start = T0 + timedelta(hours=3)  # chunks are 6 h: the first chunk straddles the window start
    # As a run does (plan_run): on a real server the compression policy would otherwise compress it all first.
    policies.pause(conn, dataset, "r")
    load_range(dsn, dataset, start, T0 + timedelta(hours=24), "3 hours")
    watermark = T0 + timedelta(hours=15)  # inside the [12 h, 18 h) chunks
    results = compressor.compress_behind(conn, dataset, start, watermark, run_id="r")
    assert results and all(r.action == "compressed" for r in results)
    assert all(r.bytes_after is not None and r.bytes_before and r.bytes_after < r.bytes_before for r in results)
    state = {(c.hypertable, c.range_start): c.is_compressed for c in compressor.list_chunks(conn, dataset)}
    for table in ("ledgers", "transactions", "operations"):
        assert state[(table, T0)] is False  # straddles the backfill start
        assert state[(table, T0 + timedelta(hours=6))] is True  # entirely behind the watermark
        assert state[(table, T0 + timedelta(hours=12))] is False  # straddles the watermark
        assert state[(table, T0 + timedelta(hours=18))] is False  # ahead of it
    assert compressor.backlog(conn, dataset, start, T0 + timedelta(hours=24))[0] == 9


def test_final_pass_folds_late_rows_into_a_compressed_chunk(dsn: str, conn: psycopg.Connection, dataset: Dataset) -> None:
    load_range(dsn, dataset, T0, T0 + timedelta(hours=12), "6 hours")
    compressor.compress_behind(conn, dataset, T0, T0 + timedelta(hours=12), run_id="r")
    # A replayed batch writes into an already compressed chunk.
    load_batch(factory(dsn), dataset, Batch(0, T0, T0 + timedelta(hours=1)), "replay")
    status = conn.execute(
        "SELECT _timescaledb_functions.chunk_status(format('%%I.%%I', chunk_schema, chunk_name)::regclass)"
        " FROM timescaledb_information.chunks WHERE hypertable_schema = %s AND hypertable_name = 'operations' AND range_start = %s",
        (dataset.tables[0].schema, T0),
    ).fetchone()[0]
    assert status & 8, "expected a partially compressed chunk after late rows"
    results, skipped = compressor.final_pass(conn, dataset, T0, T0 + timedelta(hours=12), run_id="r")
    assert not skipped
    by_chunk = {(r.chunk.hypertable, r.chunk.range_start): r.action for r in results}
    assert by_chunk[("operations", T0)] == "recompressed"
    assert by_chunk[("operations", T0 + timedelta(hours=6))] == "unchanged"
    assert rows_in(conn, dataset, T0, T0 + timedelta(hours=12)) == source_counts(dataset, T0, T0 + timedelta(hours=12))
    assert duplicate_keys(conn, dataset) == NO_DUPLICATES


def test_final_pass_never_touches_chunks_live_ingestion_may_write(dsn: str, conn: psycopg.Connection, dataset: Dataset) -> None:
    load_range(dsn, dataset, T0, T0 + timedelta(hours=12), "6 hours")
    results, skipped = compressor.final_pass(
        conn, dataset, T0, T0 + timedelta(hours=12), run_id="r", live_horizon=T0 + timedelta(hours=9)
    )
    assert {c.range_start for c in skipped} == {T0 + timedelta(hours=6)}
    assert {r.chunk.range_start for r in results} == {T0}
    assert not any(c.is_compressed for c in compressor.list_chunks(conn, dataset) if c.range_start == T0 + timedelta(hours=6))


def test_window_counts_are_exact_for_any_windows(dsn: str, conn: psycopg.Connection, dataset: Dataset) -> None:
    from tidemark.flows.verify import window_counts

    load_range(dsn, dataset, T0, T0 + timedelta(hours=12), "6 hours")
    compressor.compress_behind(conn, dataset, T0, T0 + timedelta(hours=6), run_id="r")  # mixed compressed/plain
    m = timedelta(minutes=1)
    windows = [(T0, T0 + 90 * m), (T0 + 60 * m, T0 + 400 * m), (T0 + 500 * m, T0 + 501 * m),
               (T0 - 60 * m, T0 + 10 * m), (T0 + 700 * m, T0 + 900 * m)]
    expected = [source_counts(dataset, max(s, T0), min(e, T0 + 720 * m)) if s < T0 + 720 * m
                else {t.name: 0 for t in dataset.tables} for s, e in windows]
    assert window_counts(conn, dataset, windows) == expected


def test_text_that_needs_copy_escaping_round_trips(dsn: str, conn: psycopg.Connection) -> None:
    from tidemark.model.dataset import Column, Hypertable

    ts = Column("t", "timestamptz")
    table = Hypertable("escapes", "t", (ts, Column("s", "text"), Column("n", "text", nullable=True),
                                        Column("b", "boolean")), timedelta(hours=6), schema="escapes_probe")
    values = ["tab\there", "new\nline", "cr\rhere", "back\\slash", "\\N", "plain", ""]

    def rows(start: datetime, end: datetime) -> Iterator[tuple[object, ...]]:
        for k, v in enumerate(values):
            yield (start + timedelta(minutes=k), v, None if k % 2 else v, k % 2 == 0)

    ds = Dataset(name="escapes_probe", tables=(table,), source=PythonSource(rows))
    ensure_schema(conn, ds)
    load_batch(factory(dsn), ds, Batch(0, T0, T0 + timedelta(hours=1)), "esc")
    rows = conn.execute(sql.SQL("SELECT s, n, b FROM {} ORDER BY t").format(table_ident(table))).fetchall()
    assert rows == [(v, None if k % 2 else v, k % 2 == 0) for k, v in enumerate(values)]
