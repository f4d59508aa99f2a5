"""What is transient (psycopg error classes) and the tenacity policy, on errors a real engine raises."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import EmbeddedEngine, free_port, unique_dataset
from tidemark.timescale import compressor
from tidemark import retrying
from tidemark.connection import DatabaseUnreachable, connect
from tidemark.model.dataset import Dataset


@pytest.mark.parametrize("exc", [
    psycopg.errors.LockNotAvailable("lock timeout"), psycopg.errors.DeadlockDetected("deadlock"),
    psycopg.errors.SerializationFailure("serialization"), psycopg.errors.AdminShutdown("terminating"),
    psycopg.errors.CannotConnectNow("starting up"), psycopg.errors.ConnectionFailure("lost"),
    psycopg.errors.TooManyConnections("too many clients"), psycopg.errors.IdleSessionTimeout("idle"),
    psycopg.errors.IdleInTransactionSessionTimeout("idle in transaction"), psycopg.OperationalError("server closed"),
    DatabaseUnreachable("down"),
], ids=lambda e: type(e).__name__)
def test_transient(exc: BaseException) -> None:
    assert retrying.is_transient(exc)


@pytest.mark.parametrize("exc", [
    psycopg.errors.CheckViolation("check"), psycopg.errors.DiskFull("disk full"), psycopg.errors.UndefinedTable("x"),
    psycopg.errors.QueryCanceled("canceled"), psycopg.errors.InvalidTextRepresentation("bad"), ValueError("x"),
], ids=lambda e: type(e).__name__)
def test_not_transient(exc: BaseException) -> None:
    assert not retrying.is_transient(exc)


@pytest.fixture(scope="module")
def strict_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEngine]:
    """An engine that drops clients idle in a transaction after 1 s and takes at most 2 clients."""
    eng = EmbeddedEngine(tmp_path_factory.mktemp("strict") / "db", free_port(),
                         env={"TIDEMARK_DB_IDLE_TX_TIMEOUT": "1", "TIDEMARK_DB_MAX_CLIENTS": "2"})
    eng.start()
    try:
        yield eng
    finally:
        eng.stop()


def test_the_engines_own_disconnects_are_transient(strict_engine: EmbeddedEngine) -> None:
    """Real errors from a real engine: idle-in-transaction timeout (25P03) and too many clients (53300)."""
    with psycopg.connect(strict_engine.dsn, prepare_threshold=None) as idle:
        idle.execute("SELECT 1")  # opens a transaction (not autocommit) and then sits in it
        time.sleep(2.5)
        with pytest.raises(psycopg.Error) as err:
            idle.execute("SELECT 1")
        assert retrying.is_transient(err.value), f"{type(err.value).__name__} {err.value.sqlstate}"
    with connect(strict_engine.dsn) as a, connect(strict_engine.dsn) as b:
        assert a.execute("SELECT 1").fetchone() == b.execute("SELECT 1").fetchone()
        with pytest.raises(psycopg.OperationalError) as err:
            psycopg.connect(strict_engine.dsn, prepare_threshold=None)
        assert "too many clients" in str(err.value) and retrying.is_transient(err.value)


def test_the_policy_retries_with_backoff_then_reraises_the_error_itself(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return "done"

    caplog.set_level(logging.WARNING, "tidemark.retrying")
    for attempt in retrying.policy(attempts=3, backoff_seconds=0.05, what="flaky"):
        with attempt:
            result = flaky()
    assert result == "done" and len(calls) == 3
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.05  # backed off before each retry
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["flaky attempt 1 failed", "flaky attempt 2 failed"]

    def broken() -> None:
        raise psycopg.errors.CheckViolation("bad row")

    with pytest.raises(psycopg.errors.CheckViolation):  # not retried, not wrapped in tenacity's RetryError
        for attempt in retrying.policy(attempts=5, backoff_seconds=0.05, what="broken"):
            with attempt:
                broken()


def test_compression_retries_a_transient_failure_and_gives_up_on_others(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ds: Dataset = unique_dataset(conn)
    table = ds.tables[0]
    from psycopg import sql

    from tidemark.timescale.schema import table_ident
    conn.execute(sql.SQL("INSERT INTO {} (close_time, sequence, hash, tx_count, op_count, total_fees)"
                         " SELECT g, row_number() OVER (), 'h', 1, 1, 1 FROM generate_series("
                         "'2024-01-01'::timestamptz, '2024-01-01 05:00', '1 minute') g").format(table_ident(table)))
    chunk = [c for c in compressor.list_chunks(conn, ds) if c.hypertable == table.name][0]
    monkeypatch.setenv("TIDEMARK_FAULTS", "compress.error@*x2")
    monkeypatch.setenv("TIDEMARK_FAULT_DIR", str(tmp_path))
    caplog.set_level(logging.WARNING)
    result = compressor.compress(conn, ds, chunk, run_id=None, phase="final", backoff_seconds=0.01)
    assert result.ok and result.action == "compressed"
    assert sum("retrying in" in r.getMessage() for r in caplog.records) == 2
