"""Live ingestion and its hand-over to catchup for a user's SQL dataset, driven by the source's own tip."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PostgresServer
from tidemark.flows import backfill, catchup, live
from tidemark.declare import catalog
from tidemark.state import cursors
from tidemark.connection import connect, factory
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.errors import InvalidInput
from tidemark.timescale.schema import table_ident
from tidemark.sources import PythonSource, SqlSource

UTC = timezone.utc
START = datetime(2024, 7, 1, tzinfo=UTC)


def test_live_follows_the_sql_source_tip_then_hands_the_lag_to_catchup(
    dsn: str, conn: psycopg.Connection, source_pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:8]
    monkeypatch.setenv("AIRFLOW_CONN_TICKS_DB", source_pg.dsn)
    src_table = f"ticks_{tag}"
    with connect(source_pg.dsn) as src:
        src.execute(sql.SQL("CREATE TABLE {} (t timestamptz NOT NULL, px double precision NOT NULL)").format(
            sql.Identifier(src_table)))
        insert = sql.SQL("INSERT INTO {} SELECT %s::timestamptz + g * interval '10 seconds', g FROM "
                         "generate_series(0, %s) g").format(sql.Identifier(src_table))
        src.execute(insert, (START, 6 * 17))  # 17 minutes of ticks: the tip is START + 17 min
    table = Hypertable("ticks", "t", (Column("t", "timestamptz"), Column("px", "double precision")),
                       timedelta(hours=1), schema=f"live_{tag}", source=SqlSource("ticks_db", table=src_table))
    ds = Dataset(f"ticks_{tag}", (table,))
    catalog.register(ds)
    try:
        with connect(dsn) as c:
            from tidemark.timescale.schema import ensure_schema

            ensure_schema(c, ds)
            cursors.initialise(c, ds.name, START, by="test")
        decision = live.decide(factory(dsn), ds.name, tip=None, unit="5 minutes", threshold="1 hour",
                               catchup_batch_interval="15 minutes")
        assert decision.tip == START + timedelta(minutes=17) and decision.action == "ingest"
        out = live.ingest(factory(dsn), ds.name, tip=decision.tip, unit="5 minutes", max_units=10, run_id="live")
        assert len(out["units"]) == 3 and cursors.position(conn, ds.name) == START + timedelta(minutes=15)
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table_ident(table))).fetchone()[0] == 90

        with connect(source_pg.dsn) as src:  # the source races ahead by two hours
            src.execute(insert, (START + timedelta(minutes=17, seconds=10), 6 * 120))
        decision = live.decide(factory(dsn), ds.name, tip=None, unit="5 minutes", threshold="1 hour",
                               catchup_batch_interval="15 minutes")
        assert decision.action == "catchup" and decision.catchup_conf is not None
        request = backfill.BackfillRequest.from_params(decision.catchup_conf)
        planned = catchup.plan_catchup(factory(dsn), request, "catchup-ticks")
        for b in planned["batches"]:
            catchup.stage_batch(factory(dsn), planned["plan"], b)
        catchup.publish(factory(dsn), planned["plan"])
        end = datetime.fromisoformat(decision.catchup_conf["end"])
        assert cursors.position(conn, ds.name) == end
        with connect(source_pg.dsn) as src:
            want = src.execute(sql.SQL("SELECT t, px FROM {} WHERE t < %s ORDER BY t").format(
                sql.Identifier(src_table)), (end,)).fetchall()
        got = conn.execute(sql.SQL("SELECT t, px FROM {} ORDER BY t").format(table_ident(table))).fetchall()
        assert got == want
    finally:
        catalog.unregister(ds.name)


def test_live_refuses_clearly_when_a_source_cannot_tell_its_tip(dsn: str) -> None:
    tag = uuid.uuid4().hex[:8]
    ds = Dataset(f"notip_{tag}", (Hypertable("x", "t", (Column("t", "timestamptz"),), schema=f"notip_{tag}",
                                             source=PythonSource(lambda s, e: [])),))
    catalog.register(ds)
    try:
        with pytest.raises(InvalidInput, match="cannot tell how far its data reaches"):
            live.decide(factory(dsn), ds.name, tip=None, unit="5 minutes", threshold="1 hour",
                        catchup_batch_interval="15 minutes")
    finally:
        catalog.unregister(ds.name)
