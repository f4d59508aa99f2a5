"""Compression that never fights another session: races with policy jobs and parallel compressors (real engine).

The embedded engine has one shared session and no background jobs, so the race itself is simulated: a chunk
compressed between Tidemark's listing and its compress call, and TimescaleDB's refusal (``DuplicateObject:
chunk ... is already compressed``) or a lock error injected where compress_chunk runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import registered, unique_dataset, unschedule_policies
from tidemark.connection import factory
from tidemark.flows import backfill
from tidemark.model.dataset import Dataset
from tidemark.timescale import compressor
from tidemark.timescale.schema import table_ident

UTC = timezone.utc
START = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def faults_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TIDEMARK_FAULT_DIR", str(tmp_path))
    yield tmp_path


def one_chunk(conn: psycopg.Connection) -> tuple[Dataset, compressor.Chunk]:
    """A fresh dataset with one uncompressed chunk of ledgers, and that chunk as listed now."""
    ds = unique_dataset(conn)
    unschedule_policies(conn, ds)  # the races below are staged by the test, not left to a policy job
    table = ds.tables[0]
    conn.execute(sql.SQL("INSERT INTO {} (close_time, sequence, hash, tx_count, op_count, total_fees)"
                         " SELECT g, row_number() OVER (), 'h', 1, 1, 1 FROM generate_series("
                         "%s::timestamptz, %s::timestamptz, '1 minute') g").format(table_ident(table)),
                 (START, START + timedelta(hours=5)))
    chunks = [c for c in compressor.list_chunks(conn, ds) if c.hypertable == table.name]
    assert len(chunks) == 1 and not chunks[0].is_compressed
    return ds, chunks[0]


def compress_by_hand(conn: psycopg.Connection, chunk: compressor.Chunk) -> None:
    """What a compression policy job (or another Tidemark task) does between our listing and our call."""
    conn.execute("SELECT compress_chunk(%s::regclass)", (chunk.ident.as_string(conn),))


def test_a_chunk_compressed_after_the_listing_is_done_and_the_final_pass_does_not_fail(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, stale = one_chunk(conn)
    compress_by_hand(conn, stale)
    result = compressor.compress(conn, ds, stale, run_id=None, phase="final")
    assert result.ok and result.action == "unchanged"  # re-read before compress_chunk: nothing to do
    monkeypatch.setattr(compressor, "list_chunks", lambda *a, **k: [stale])  # the final pass with a stale listing
    results, _ = compressor.final_pass(conn, ds, START, START + timedelta(hours=6), run_id=None)
    assert [r.action for r in results] == ["unchanged"] and all(r.ok for r in results)


def test_timescaledbs_already_compressed_refusal_counts_as_done_not_failed(
    conn: psycopg.Connection, faults_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ds, chunk = one_chunk(conn)
    # The refusal compress_chunk raises when another session compressed the chunk after our look, under its lock.
    monkeypatch.setenv("TIDEMARK_FAULTS", "compress.error:DuplicateObject@*x1")
    caplog.set_level(logging.INFO, logger=compressor.__name__)
    result = compressor.compress(conn, ds, chunk, run_id=None, phase="final", backoff_seconds=0.01)
    assert result.ok and result.action == "elsewhere" and result.error is None
    assert not any("retrying in" in r.getMessage() for r in caplog.records)  # done at once, not retried
    assert any("done by another session" in r.getMessage() and "already compressed" in r.getMessage()
               for r in caplog.records)


def test_a_lock_timeout_is_retried_and_then_compresses(
    conn: psycopg.Connection, faults_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ds, chunk = one_chunk(conn)
    monkeypatch.setenv("TIDEMARK_FAULTS", "compress.error:LockNotAvailable@*x2")
    caplog.set_level(logging.WARNING)
    result = compressor.compress(conn, ds, chunk, run_id=None, phase="final", backoff_seconds=0.01)
    assert result.ok and result.action == "compressed"
    assert sum("LockNotAvailable" in r.getMessage() and "retrying in" in r.getMessage() for r in caplog.records) == 2
    assert compressor.list_chunks(conn, ds)[0].is_compressed


@pytest.mark.parametrize("error", ["DeadlockDetected", "SerializationFailure"])
def test_deadlocks_and_serialization_failures_are_retried_too(
    conn: psycopg.Connection, faults_dir: Path, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    ds, chunk = one_chunk(conn)
    monkeypatch.setenv("TIDEMARK_FAULTS", f"compress.error:{error}@*x1")
    result = compressor.compress(conn, ds, chunk, run_id=None, phase="final", backoff_seconds=0.01)
    assert result.ok and result.action == "compressed"


def test_a_lock_that_never_frees_fails_the_chunk_when_nobody_else_is_compressing_it(
    conn: psycopg.Connection, faults_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, chunk = one_chunk(conn)
    monkeypatch.setenv("TIDEMARK_FAULTS", "compress.error:LockNotAvailable@*")
    assert compressor.compressing_elsewhere(conn, chunk) is None  # one session: nobody holds the chunk
    result = compressor.compress(conn, ds, chunk, run_id=None, phase="final", attempts=2, backoff_seconds=0.01)
    assert not result.ok and result.action == "failed" and (result.error or "").startswith("LockNotAvailable")


def test_compression_sets_a_local_lock_timeout(
    conn: psycopg.Connection, faults_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, chunk = one_chunk(conn)
    seen: list[str] = []
    original = compressor.faults.check

    def spy(point: str, index: int | None = None, message: str = "") -> None:
        if point == "compress.error":
            seen.append(str(conn.execute("SHOW lock_timeout").fetchone()[0]))  # type: ignore[index]
        original(point, index, message)

    monkeypatch.setattr(compressor.faults, "check", spy)
    assert compressor.compress(conn, ds, chunk, run_id=None, phase="final", lock_timeout="3s").ok
    assert seen == ["3s"]
    assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)  # SET LOCAL: gone with the transaction


def test_finalize_succeeds_when_another_session_compressed_a_chunk_first(
    dsn: str, conn: psycopg.Connection, faults_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In finalize's last pass the race used to fail the run; now the chunk counts as compressed."""
    monkeypatch.setenv("TIDEMARK_DIRECT_COMPRESS", "off")  # classic COPY: every chunk is left to compress
    tag = unique_dataset(conn)
    with registered(tag) as ds:
        connect = factory(dsn)
        request = backfill.BackfillRequest.from_params({
            "dataset": ds.name, "start": START.isoformat(), "end": (START + timedelta(hours=12)).isoformat(),
            "batch_interval": "6 hours"})
        planned = backfill.plan_run(connect, request, f"race-{ds.name}")
        summary, batches = planned["plan"], planned["batches"]
        results = {b["index"]: backfill.insert_batch(connect, summary, b, compress=False) for b in batches}
        monkeypatch.setenv("TIDEMARK_FAULTS", "compress.error:DuplicateObject@*x1")
        report = backfill.finalize(connect, summary, {i: "success" for i in results}, results)
        assert report is not None and report["rows_in_window_total"] > 0
        state = conn.execute("SELECT state FROM tidemark.runs WHERE run_id = %s", (summary["run_id"],)).fetchone()
        assert state == ("succeeded",)
