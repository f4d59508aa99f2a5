"""What Tidemark reads of the TimescaleDB server, once, and how the write mode follows it (embedded engine: 2.23; a native server: its own)."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql

from tests.conftest import is_embedded, unique_dataset
from tidemark.timescale import columnstore, version
from tidemark.timescale.schema import table_ident


def test_the_servers_features_follow_its_version(conn: psycopg.Connection, dsn: str) -> None:
    """The embedded engine is 2.23 (direct COPY, client-sorted, nothing newer); a native server is whatever it is."""
    server = version.read(conn)
    at_least = server.version.__ge__
    assert server.features() == {
        "direct_copy": True, "client_sorted_copy": True, "direct_insert": True,  # the GUCs of 2.21 and 2.23
        "direct_with_caggs": at_least((2, 24, 0)),
        "direct_enforces_checks": at_least((2, 28, 1)),
        "segmentby_deferred": at_least((2, 27, 0)),
        "table_direct_compress": at_least((2, 29, 0)), "compact_chunk": at_least((2, 29, 0)),
    }
    assert server.describe().startswith(f"TimescaleDB {server.version_text}")
    if is_embedded(dsn):
        assert server.version[:2] == (2, 23)


def test_the_server_is_read_once_per_server(conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    version.forget()
    calls: list[int] = []
    real = version.read

    def counting(c: psycopg.Connection) -> version.Server:
        calls.append(1)
        return real(c)

    monkeypatch.setattr(version, "read", counting)
    assert version.server(conn) is version.server(conn)
    assert len(calls) == 1


def newer(conn: psycopg.Connection, release: tuple[int, int, int]) -> version.Server:
    """The embedded engine's answer with another version number: features that go by version follow it."""
    return dataclasses.replace(version.read(conn), version=release, version_text=".".join(map(str, release)))


def test_continuous_aggregates_block_direct_copy_only_before_2_24(conn: psycopg.Connection) -> None:
    ds = unique_dataset(conn)
    ledgers = ds.tables[0]
    conn.execute(sql.SQL(
        "CREATE MATERIALIZED VIEW {} WITH (timescaledb.continuous) AS SELECT time_bucket('1 hour', close_time) AS b,"
        " count(*) FROM {} GROUP BY 1 WITH NO DATA").format(sql.Identifier(ledgers.schema, "hourly"), table_ident(ledgers)))
    assert columnstore.blockers(conn, ledgers, newer(conn, (2, 23, 0)))[0].startswith("continuous aggregates")
    assert columnstore.blockers(conn, ledgers, newer(conn, (2, 24, 0))) == []
    # The server's own answer follows its version (the embedded engine: 2.23, blocked).
    assert bool(columnstore.blockers(conn, ledgers)) == (version.read(conn).version < (2, 24, 0))


def test_check_constraints_block_direct_copy_until_2_28_1(conn: psycopg.Connection) -> None:
    """Before 2.28.1 a direct COPY wrote rows that break a CHECK constraint: such a table loads the classic way."""
    ds = unique_dataset(conn)
    ops = ds.table("operations")
    conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT positive CHECK (amount >= 0)").format(table_ident(ops)))
    assert columnstore.blockers(conn, ops, newer(conn, (2, 28, 0))) == [
        "CHECK constraints (direct COPY enforces them from TimescaleDB 2.28.1)"]
    assert columnstore.blockers(conn, ops, newer(conn, (2, 28, 1))) == []
    assert bool(columnstore.blockers(conn, ops)) == (version.read(conn).version < (2, 28, 1))
    assert columnstore.blockers(conn, ds.table("ledgers"), newer(conn, (2, 23, 0))) == []  # no CHECK there


@pytest.mark.embedded  # writes TimescaleDB's catalog: the embedded engine's superuser can, a loader role cannot
def test_a_tables_own_direct_compress_is_respected_and_reported(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """TimescaleDB 2.29's tsdb.direct_compress is hypertable status bit 8 (unused by 2.23): set it by hand."""
    ds = unique_dataset(conn)
    ops = ds.table("operations")
    conn.execute("UPDATE _timescaledb_catalog.hypertable SET status = status | 8 WHERE schema_name = %s"
                 " AND table_name = %s", (ops.schema, ops.name))
    assert not columnstore.opted_in(conn, ops, version.read(conn))  # 2.23 has no such option: bit ignored
    server_229 = newer(conn, (2, 29, 0))
    assert columnstore.opted_in(conn, ops, server_229)
    monkeypatch.setattr(version, "server", lambda c: server_229)
    conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (sequence, close_time)").format(table_ident(ds.tables[0])))

    monkeypatch.setenv(columnstore.ENV, "auto")  # ledgers blocked: auto would load nothing directly ...
    caplog.set_level(logging.INFO, logger=columnstore.__name__)
    assert columnstore.resolve(conn, ds) == ["transactions", "operations"]  # ... but operations asks for it
    modes = {m.table: m for m in columnstore.decide(conn, ds)}
    assert modes["operations"].reason == "the table's own tsdb.direct_compress"
    assert modes["ledgers"].reason == "cannot take direct COPY: unique index"
    assert "operations direct (the table's own tsdb.direct_compress)" in caplog.text

    monkeypatch.setenv(columnstore.ENV, "off")
    assert columnstore.resolve(conn, ds) == []
    assert "write it directly anyway" in {m.table: m for m in columnstore.decide(conn, ds)}["operations"].reason


def test_without_direct_copy_every_table_is_classic_and_says_why(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = unique_dataset(conn)
    old = dataclasses.replace(version.read(conn), version=(2, 20, 0), version_text="2.20.0", settings=frozenset())
    monkeypatch.setattr(version, "server", lambda c: old)
    monkeypatch.setenv(columnstore.ENV, "on")
    modes = columnstore.decide(conn, ds)
    assert [m.direct for m in modes] == [False] * 3 and "has no direct COPY (2.21+)" in modes[0].reason
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert columnstore.sorted_tables(conn, columnstore.with_mode(ds, ["ledgers"]), start, start + timedelta(hours=6)) == {}
