"""Retention policies and continuous aggregates on the real embedded engine (issue 13, points 9 and 10)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import registered
from tidemark.flows import backfill, progressive
from tidemark.timescale import policies
from tidemark.connection import connect, factory
from tidemark.model.dataset import Dataset
from tidemark.errors import InvalidInput
from tidemark.flows.report import format_report
from tidemark.timescale.schema import table_ident

UTC = timezone.utc
START = datetime(2024, 6, 1, 5, tzinfo=UTC)  # not on a day boundary: the daily buckets straddle the window's edges
HOURS = 9


def request(ds: Dataset, start: datetime = START, hours: int = HOURS, **extra: Any) -> backfill.BackfillRequest:
    return backfill.BackfillRequest.from_params(
        {"dataset": ds.name, "start": start.isoformat(), "end": (start + timedelta(hours=hours)).isoformat(),
         "batch_interval": "3 hours", **extra})


def run_backfill(dsn: str, req: backfill.BackfillRequest, run_id: str) -> dict[str, Any]:
    connect_ = factory(dsn)
    planned = backfill.plan_run(connect_, req, run_id)
    summary, batches = planned["plan"], planned["batches"]
    results = {b["index"]: backfill.insert_batch(connect_, summary, b) for b in batches}
    states = {i: "success" for i in results}
    progressive.poke(connect_, summary, states)
    return backfill.finalize(connect_, summary, states, results)


@pytest.fixture
def ds(dataset: Dataset) -> Any:
    with registered(dataset) as d:
        yield d


# --------------------------------------------------------------------------- 9. retention


def add_retention(conn: psycopg.Connection, ds: Dataset, table: str, drop_after: str) -> int:
    job = conn.execute("SELECT add_retention_policy(%s::regclass, drop_after => %s::interval)",
                       (table_ident(ds.table(table)).as_string(conn), drop_after)).fetchone()
    assert job
    return int(job[0])


def test_a_window_behind_a_retention_horizon_is_refused_naming_policy_and_horizon(
    dsn: str, conn: psycopg.Connection, ds: Dataset
) -> None:
    job = add_retention(conn, ds, "operations", "30 days")
    horizon_now = conn.execute("SELECT now() - interval '30 days'").fetchone()[0]
    with pytest.raises(InvalidInput) as err:
        backfill.plan_run(factory(dsn), request(ds), "retention-refused")
    message = str(err.value)
    schema = ds.tables[0].schema
    assert f"hypertable {schema}.operations has retention policy job {job} (drop_after 30 days)" in message
    assert horizon_now.date().isoformat() in message and policies.ALLOW_PARAM in message
    assert conn.execute("SELECT count(*) FROM tidemark.runs WHERE run_id = 'retention-refused'").fetchone()[0] == 0
    # A window wholly after the horizon is not refused.
    recent = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    planned = backfill.plan_run(factory(dsn), request(ds, start=recent, hours=3, dry_run=True), "retention-recent")
    assert planned["plan"]["retention"][0]["job_id"] == job


def test_an_explicit_opt_in_loads_it_and_the_report_shows_the_horizon(
    dsn: str, conn: psycopg.Connection, ds: Dataset
) -> None:
    job = add_retention(conn, ds, "ledgers", "90 days")
    report = run_backfill(dsn, request(ds, **{policies.ALLOW_PARAM: True}), "retention-opt-in")
    assert [(h["hypertable"], h["job_id"], h["drop_after"]) for h in report["retention"]] == [
        (f"{ds.tables[0].schema}.ledgers", job, "90 days")]
    assert "drop_after 90 days" in format_report(report) and report["retention"][0]["horizon"] in format_report(report)
    assert report["rows_in_window_total"] > 0


def test_only_an_explicit_true_opts_in(ds: Dataset) -> None:
    assert request(ds, **{policies.ALLOW_PARAM: True}).allow_older_than_retention
    assert not request(ds, **{policies.ALLOW_PARAM: "yes"}).allow_older_than_retention
    assert not request(ds).allow_older_than_retention


# --------------------------------------------------------------------------- 10. continuous aggregates


def make_caggs(conn: psycopg.Connection, ds: Dataset) -> tuple[sql.Identifier, sql.Identifier]:
    schema = ds.tables[0].schema
    hourly, daily = sql.Identifier(schema, "tx_hourly"), sql.Identifier(schema, "tx_daily")
    conn.execute(sql.SQL(
        "CREATE MATERIALIZED VIEW {} WITH (timescaledb.continuous) AS"
        " SELECT time_bucket('1 hour', close_time) AS bucket, count(*) AS n FROM {} GROUP BY bucket WITH NO DATA"
    ).format(hourly, table_ident(ds.table("transactions"))))
    conn.execute(sql.SQL(  # hierarchical: a daily aggregate over the hourly one
        "CREATE MATERIALIZED VIEW {} WITH (timescaledb.continuous) AS"
        " SELECT time_bucket('1 day', bucket) AS day, sum(n) AS n FROM {} GROUP BY day WITH NO DATA"
    ).format(daily, hourly))
    return hourly, daily


def test_finalize_refreshes_every_continuous_aggregate_over_the_window(
    dsn: str, conn: psycopg.Connection, ds: Dataset
) -> None:
    hourly, daily = make_caggs(conn, ds)
    report = run_backfill(dsn, request(ds), "cagg-refresh")
    schema = ds.tables[0].schema
    refreshed = [r["view"] for r in report["continuous_aggregates_refreshed"]]
    assert refreshed == [f"{schema}.tx_hourly", f"{schema}.tx_daily"], refreshed  # parents before children
    assert "refreshed    continuous aggregate" in format_report(report)

    raw = table_ident(ds.table("transactions"))
    end = START + timedelta(hours=HOURS)
    want_hourly = conn.execute(sql.SQL(
        "SELECT time_bucket('1 hour', close_time) b, count(*) FROM {} WHERE close_time >= %s AND close_time < %s"
        " GROUP BY b ORDER BY b").format(raw), (START, end)).fetchall()
    got_hourly = conn.execute(sql.SQL("SELECT bucket, n FROM {} ORDER BY bucket").format(hourly)).fetchall()
    assert got_hourly == want_hourly and len(got_hourly) == HOURS
    total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(raw)).fetchone()[0]
    got_daily = conn.execute(sql.SQL("SELECT sum(n) FROM {}").format(daily)).fetchone()[0]
    assert got_daily == total > 0  # the straddling daily bucket was refreshed too


def test_no_continuous_aggregates_nothing_refreshed(dsn: str, ds: Dataset) -> None:
    report = run_backfill(dsn, request(ds, hours=3), "cagg-none")
    assert report["continuous_aggregates_refreshed"] == []
    with connect(dsn) as conn:
        assert policies.continuous_aggregates(conn, ds) == []


def test_a_catchup_publish_refreshes_the_continuous_aggregates_too(dsn: str, conn: psycopg.Connection, ds: Dataset) -> None:
    from tidemark.flows import catchup

    hourly, _ = make_caggs(conn, ds)
    planned = catchup.plan_catchup(factory(dsn), request(ds), "cagg-catchup")
    for b in planned["batches"]:
        catchup.stage_batch(factory(dsn), planned["plan"], b)
    result = catchup.publish(factory(dsn), planned["plan"])
    schema = ds.tables[0].schema
    assert result["continuous_aggregates_refreshed"] == [f"{schema}.tx_hourly", f"{schema}.tx_daily"]
    got = conn.execute(sql.SQL("SELECT sum(n) FROM {}").format(hourly)).fetchone()[0]
    assert got == result["published"]["transactions"] > 0
