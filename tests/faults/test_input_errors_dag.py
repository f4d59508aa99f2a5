"""Input errors under real Airflow (dag.test()): each fails its task at once, try 1 of 3, and harms nothing.

A source query that writes, a value a column cannot take, a rival run over the window, a range that
cannot be planned: retrying would only meet the same error again, so none of them is retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.dags.test_backfill_dag import load_dag
from tidemark.connection import connect, factory
from tidemark.declare import catalog
from tidemark.flows import backfill
from tidemark.flows.request import BackfillRequest
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.sources import FilesSource, SqlSource

UTC = timezone.utc
START = datetime(2024, 5, 1, tzinfo=UTC)


def conf(ds: Dataset, start: datetime = START, hours: int = 12, **changes: Any) -> dict[str, Any]:
    return {"dataset": ds.name, "start": start.isoformat(), "end": (start + timedelta(hours=hours)).isoformat(),
            "batch_interval": "3 hours", **changes}


def tries(run: Any) -> dict[str, tuple[str, int]]:
    """Each task instance's state and try number, as ``task[map_index]``."""
    return {f"{ti.task_id}[{ti.map_index}]": (ti.state, ti.try_number) for ti in run.get_task_instances()}


def claimed(dsn: str, dataset: str) -> int:
    with connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('tidemark.runs') IS NULL").fetchone()[0]:
            return 0
        return int(conn.execute("SELECT count(*) FROM tidemark.runs WHERE dataset = %s", (dataset,)).fetchone()[0])


def run_dataset(ds: Dataset, capfd: pytest.CaptureFixture[str]) -> tuple[Any, str]:
    """dag.test() the generic backfill DAG over ``ds`` (known to the catalogue meanwhile); the run and its output."""
    catalog.register(ds)
    try:
        run = load_dag().test(run_conf=conf(ds))
    finally:
        catalog.unregister(ds.name)
    return run, "".join(capfd.readouterr())


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A schema of the test's own on the target engine, dropped afterwards."""
    name = f"inp_{uuid.uuid4().hex[:8]}"
    with connect(dsn) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with connect(dsn) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def test_a_query_that_drops_chunks_fails_the_plan_once_and_the_victim_keeps_its_rows(
    airflow_conn: str, dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The source is the target itself; its query returns the table's columns and calls drop_chunks() on a hypertable."""
    monkeypatch.setenv("AIRFLOW_CONN_INPUT_TARGET_AS_SOURCE", dsn.split("?")[0])
    s = sql.Identifier(schema)
    with connect(dsn) as conn:
        conn.execute(sql.SQL("CREATE TABLE {}.src (t timestamptz NOT NULL, v integer)").format(s))
        conn.execute(sql.SQL("INSERT INTO {}.src SELECT %s::timestamptz + g * interval '10 minutes', g"
                             " FROM generate_series(0, 71) g").format(s), (START,))
        conn.execute(sql.SQL("CREATE TABLE {}.victim (t timestamptz NOT NULL, x integer)").format(s))
        conn.execute("SELECT create_hypertable(%s, 't', chunk_time_interval => interval '1 day')", (f"{schema}.victim",))
        conn.execute(sql.SQL("INSERT INTO {}.victim SELECT %s::timestamptz - g * interval '1 hour', g"
                             " FROM generate_series(1, 72) g").format(s), (START,))
    attack = (f'SELECT t, v FROM "{schema}".src WHERE t >= %(start)s AND t < %(end)s AND (SELECT count(*) FROM '
              f"drop_chunks('\"{schema}\".victim', older_than => now() + interval '100 years')) >= 0")
    table = Hypertable("copied", "t", (Column("t", "timestamptz"), Column("v", "integer", True)), timedelta(days=1),
                       schema=schema, source=SqlSource("input_target_as_source", attack))
    ds = Dataset(f"attack_{schema}", (table,))
    run, text = run_dataset(ds, capfd)
    with connect(dsn) as conn:
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}.victim").format(s)).fetchone()[0] == 72
        assert conn.execute("SELECT to_regclass(%s) IS NULL", (f"{schema}.copied",)).fetchone()[0], "nothing created"
    assert run.state == "failed"
    assert tries(run)["plan[-1]"] == ("failed", 1), "an input error is not retried"
    assert f"dataset {ds.name!r}: table {schema}.copied: the sql source's query" in text
    assert "cannot execute drop_chunks() in a read-only transaction" in text
    assert claimed(dsn, ds.name) == 0


def test_a_value_a_column_cannot_take_fails_its_batch_at_once(
    airflow_conn: str, dsn: str, schema: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """CSV files: 'n/a' in a smallint column (refused while encoding) and a code too long for its varchar(4)
    (refused by the server's COPY): each fails its batch on its first try; the other batches load."""
    for h in range(12):
        hour = START + timedelta(hours=h)
        folder = tmp_path / hour.strftime("%Y-%m-%d/%H")
        folder.mkdir(parents=True)
        bad = {(4, 30): ("n/a", "ok"), (7, 10): ("7", "far too long")}
        lines = ["t,n,code"] + [",".join(((hour + timedelta(minutes=m)).isoformat(), *bad.get((h, m), (str(m), "ok"))))
                                for m in range(0, 60, 10)]
        (folder / "part.csv").write_text("\n".join(lines) + "\n")
    table = Hypertable("counts", "t", (Column("t", "timestamptz"), Column("n", "smallint", True),
                                       Column("code", "varchar(4)", True)), timedelta(hours=6), schema=schema,
                       source=FilesSource(f"file://{tmp_path}/{{start:%Y-%m-%d/%H}}/*.csv", "csv", base_dir=tmp_path))
    ds = Dataset(f"csv_{schema}", (table,))
    run, text = run_dataset(ds, capfd)
    got = tries(run)
    assert got["plan[-1]"] == ("success", 1)
    assert got["insert_batch[1]"] == ("failed", 1), f"a value refused while encoding is not retried: {got}"
    assert got["insert_batch[2]"] == ("failed", 1), f"a value the server refused is not retried: {got}"
    assert got["insert_batch[0]"] == got["insert_batch[3]"] == ("success", 1)
    assert run.state == "failed"
    assert "column 'n' (smallint) cannot take 'n/a'" in text
    assert "the database refused" in text and "value too long for type character varying(4)" in text
    with connect(dsn) as conn:
        windows = conn.execute("SELECT window_start FROM tidemark.batch_ledger WHERE dataset = %s ORDER BY 1",
                               (ds.name,)).fetchall()
    assert [w[0] for w in windows] == [START, START + timedelta(hours=9)]


def test_a_run_overlapping_a_rivals_claim_fails_its_plan_at_once(
    registered_dataset: Dataset, airflow_conn: str, dsn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    backfill.plan_run(factory(dsn), BackfillRequest.from_params(conf(registered_dataset, hours=24)), "rival-loader")
    run = load_dag().test(run_conf=conf(registered_dataset))
    assert run.state == "failed"
    assert tries(run)["plan[-1]"] == ("failed", 1), "a rival run is not waited out by retrying"
    assert "overlaps backfill run 'rival-loader'" in "".join(capfd.readouterr())


def test_an_end_past_the_last_plannable_instant_fails_the_plan_once_saying_so(
    registered_dataset: Dataset, airflow_conn: str, dsn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    run = load_dag().test(run_conf=conf(registered_dataset, start=datetime(9999, 12, 30, tzinfo=UTC),
                                        end="9999-12-31T23:59:59+00:00", batch_interval="1 day"))
    assert run.state == "failed"
    assert tries(run)["plan[-1]"] == ("failed", 1), "a range that cannot be planned is not retried"
    text = "".join(capfd.readouterr())
    assert "end 9999-12-31T23:59:59+00:00 is later than 9999-01-01T00:00:00+00:00" in text
    assert "move end earlier" in text
    assert claimed(dsn, registered_dataset.name) == 0


def test_a_csv_without_the_time_column_fails_the_plan_once_not_every_batch(
    airflow_conn: str, dsn: str, schema: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The files source's plan-time check reads one header per table: the plan fails at try 1, no batch is mapped."""
    for hour in range(0, 12, 3):
        folder = tmp_path / (START + timedelta(hours=hour)).strftime("%Y-%m-%d/%H")
        folder.mkdir(parents=True)
        (folder / "part.csv").write_text("when,n\n" + "".join(
            f"{(START + timedelta(hours=hour, minutes=m)).isoformat()},{m}\n" for m in range(3)))
    table = Hypertable("readings", "t", (Column("t", "timestamptz"), Column("n", "smallint")), schema=schema,
                       chunk_interval=timedelta(hours=6),
                       source=FilesSource(f"file://{tmp_path}/{{start:%Y-%m-%d/%H}}/*.csv", "csv", base_dir=tmp_path))
    ds = Dataset(f"nots_{schema}", (table,))
    run, text = run_dataset(ds, capfd)
    got = tries(run)
    assert run.state == "failed" and got["plan[-1]"] == ("failed", 1), got
    assert not any(k.startswith("insert_batch[") and int(k[13:-1]) >= 0 for k in got), got
    assert "has no time column 't'" in text and "when" in text
    assert claimed(dsn, ds.name) == 0, "the plan claimed the range although its files could never load"
