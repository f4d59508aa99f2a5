"""The embedded engine's front end behaves like a PostgreSQL server to real clients."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.conftest import EmbeddedEngine
from tidemark.connection import connect


def test_timescaledb_with_compression_is_available(conn: psycopg.Connection) -> None:
    assert conn.execute("SELECT current_database()").fetchone()[0] == conn.info.dbname
    assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    assert conn.execute("SHOW timescaledb.license").fetchone()[0] == "timescale"


def test_sslrequest_is_declined_and_client_falls_back(dsn: str) -> None:
    prefer = dsn.replace("sslmode=disable", "sslmode=prefer")
    with psycopg.connect(prefer, prepare_threshold=None) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_extended_protocol_with_parameters(conn: psycopg.Connection) -> None:
    row = conn.execute("SELECT %s::int + 1, %s::text, %s::timestamptz", (41, "ünïcode", "2024-01-01T00:00Z")).fetchone()
    assert row[0] == 42 and row[1] == "ünïcode" and row[2].year == 2024


def test_copy_text_csv_and_binary_and_a_message_over_64kib(conn: psycopg.Connection) -> None:
    # A schema of its own: on PostgreSQL 15+ a loader role may not create tables in public.
    conn.execute("CREATE SCHEMA IF NOT EXISTS engine_probe")
    conn.execute("CREATE TABLE IF NOT EXISTS engine_probe.copy_probe (a int, b text)")
    conn.execute("TRUNCATE engine_probe.copy_probe")
    big = "".join(f"{i}\t{'x' * 200}\n" for i in range(5000)).encode()  # ~1 MB in one CopyData message
    assert len(big) > 64 * 1024
    with conn.cursor() as cur:
        with cur.copy("COPY engine_probe.copy_probe (a, b) FROM STDIN") as copy:
            copy.write(big)
        assert cur.rowcount == 5000
        with cur.copy('COPY "engine_probe"."copy_probe" FROM STDIN WITH (FORMAT csv)') as copy:
            copy.write(b'-1,"a,b"\n')
        with cur.copy("COPY engine_probe.copy_probe (a, b) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text"])
            copy.write_row((-2, "bin"))
    assert conn.execute("SELECT count(*) FROM engine_probe.copy_probe").fetchone()[0] == 5002
    assert conn.execute("SELECT b FROM engine_probe.copy_probe WHERE a = -1").fetchone()[0] == "a,b"
    assert conn.execute("SELECT b FROM engine_probe.copy_probe WHERE a = -2").fetchone()[0] == "bin"
    # A query message far above 64 KiB.
    values = ",".join(f"({i}, 'v')" for i in range(20000))
    conn.execute(f"INSERT INTO engine_probe.copy_probe VALUES {values}")
    assert conn.execute("SELECT count(*) FROM engine_probe.copy_probe").fetchone()[0] == 25002


def test_copy_errors_are_reported_and_abort_only_the_transaction(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        with conn.cursor() as cur, cur.copy("COPY no_such_table FROM STDIN") as copy:
            copy.write(b"1\n")
    conn.execute("CREATE TABLE IF NOT EXISTS copy_bad (a int)")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        with conn.transaction(), conn.cursor() as cur, cur.copy("COPY copy_bad FROM STDIN") as copy:
            copy.write(b"not-a-number\n")
    assert conn.execute("SELECT count(*) FROM copy_bad").fetchone()[0] == 0


@pytest.mark.single_session  # a real server runs the second client's query at once, outside the transaction
def test_a_second_client_waits_for_an_open_transaction_instead_of_failing(dsn: str) -> None:
    with connect(dsn) as a, connect(dsn) as b:
        a.execute("CREATE TABLE IF NOT EXISTS wait_probe (a int)")
        seen: list[tuple[int, float]] = []
        with a.transaction():
            a.execute("INSERT INTO wait_probe VALUES (1)")
            t0 = time.monotonic()
            reader = threading.Thread(
                target=lambda: seen.append((b.execute("SELECT count(*) FROM wait_probe").fetchone()[0], time.monotonic() - t0))
            )
            reader.start()
            time.sleep(1.0)
            assert not seen, "the second client ran inside the first client's transaction"
        reader.join(10)
        assert seen and seen[0][0] >= 1 and seen[0][1] >= 0.9


def test_disconnect_inside_a_transaction_rolls_back(dsn: str) -> None:
    with connect(dsn) as c:
        c.execute("CREATE TABLE IF NOT EXISTS rb_probe (a int)")
    quitter = connect(dsn, autocommit=False)
    quitter.execute("INSERT INTO rb_probe VALUES (1)")
    quitter.close()
    with connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM rb_probe").fetchone()[0] == 0


def test_idle_in_transaction_timeout_and_too_many_clients(private_engine: EmbeddedEngine) -> None:
    private_engine.extra_env = {"TIDEMARK_DB_IDLE_TX_TIMEOUT": "1", "TIDEMARK_DB_MAX_CLIENTS": "3"}
    private_engine.start()
    dsn = private_engine.dsn
    stuck = connect(dsn, autocommit=False)
    stuck.execute("SELECT 1")  # opens a transaction, then goes idle
    with connect(dsn) as other:
        t0 = time.monotonic()
        assert other.execute("SELECT 2").fetchone() == (2,)
        assert 0.5 < time.monotonic() - t0 < 10
    with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout, match="idle-in-transaction timeout"):
        stuck.execute("SELECT 3")
    stuck.close()
    held = [connect(dsn) for _ in range(3)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many clients"):
            psycopg.connect(dsn, prepare_threshold=None)
    finally:
        for c in held:
            c.close()


def test_kill9_keeps_synchronous_commits(private_engine: EmbeddedEngine) -> None:
    private_engine.start()
    with connect(private_engine.dsn) as c:
        c.execute("CREATE TABLE durable (a int)")
        c.execute("INSERT INTO durable SELECT generate_series(1, 1000)")
    private_engine.kill9()
    out = private_engine.start()
    assert "started" in out
    with connect(private_engine.dsn) as c:
        assert c.execute("SELECT count(*) FROM durable").fetchone()[0] == 1000
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()


def test_start_is_idempotent_and_binds_loopback_only(private_engine: EmbeddedEngine) -> None:
    private_engine.start()
    again = private_engine.start()
    assert "already running" in again
    import subprocess

    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    lines = [line for line in listening.splitlines() if f":{private_engine.port} " in line]
    assert lines and all("127.0.0.1:" in line for line in lines), lines
