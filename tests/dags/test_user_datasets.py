"""Datasets declared in YAML, one per source kind, through real Airflow (DagBag + dag.test()).

Each loads exactly the source's rows, compresses every chunk and is idempotent on rerun; a broken
declaration leaves the DAGs parsing and the other datasets offered.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from tests.conftest import PostgresServer
from tests.dags import user_sources
from tidemark.declare import catalog
from tidemark.timescale import compressor
from tidemark.connection import connect
from tidemark.model.dataset import Dataset
from tidemark.timescale.schema import table_ident

UTC = timezone.utc
DAGS = Path(__file__).resolve().parents[2] / "dags"
START = user_sources.EPOCH
END = START + timedelta(days=1)


def load_dags() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture
def datasets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_conn: str) -> Iterator[Path]:
    folder = tmp_path / "datasets"
    folder.mkdir()
    monkeypatch.setenv("TIDEMARK_DATASETS_DIR", str(folder))
    yield folder


def declare(folder: Path, name: str, text: str) -> Dataset:
    (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    return catalog.get(name)


def rows(conn: psycopg.Connection, ds: Dataset, table: str) -> list[tuple[Any, ...]]:
    t = ds.table(table)
    return conn.execute(sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(table_ident(t))).fetchall()


def run_twice_and_check(dsn: str, ds: Dataset, expected: dict[str, list[tuple[Any, ...]]], step: str) -> dict[str, Any]:
    """dag.test() the window, check rows and compression, rerun: nothing loads again, nothing changes."""
    dag = load_dags().dags["tidemark_backfill"]
    conf = {"dataset": ds.name, "start": START.isoformat(), "end": END.isoformat(), "batch_interval": step}
    assert dag.test(run_conf=conf).state == "success"
    with connect(dsn) as conn:
        for table, want in expected.items():
            assert rows(conn, ds, table) == want, f"{table}: rows differ from the source"
        chunks = compressor.list_chunks(conn, ds)
        assert chunks and all(c.is_compressed for c in chunks), "not every chunk is compressed"
        report = conn.execute("SELECT report FROM tidemark.runs WHERE dataset = %s AND state = 'succeeded'"
                              " ORDER BY finished_at DESC LIMIT 1", (ds.name,)).fetchone()[0]
    assert dag.test(run_conf=conf).state == "success"
    with connect(dsn) as conn:
        for table, want in expected.items():
            assert rows(conn, ds, table) == want, f"{table}: the rerun changed rows"
        again = conn.execute("SELECT report FROM tidemark.runs WHERE dataset = %s AND state = 'succeeded'"
                             " ORDER BY finished_at DESC LIMIT 1", (ds.name,)).fetchone()[0]
    assert again["batches"]["loaded"] == 0 and again["rows_loaded_total"] == 0
    return report


def test_every_tidemark_dag_offers_declared_datasets_and_survives_a_broken_file(datasets_dir: Path) -> None:
    declare(datasets_dir, "offered", """\
        name: offered
        tables:
          - name: offered
            time_column: t
            columns: [{name: t, type: timestamptz}]
            source: {kind: python, callable: "tests.dags.user_sources:meters"}
        """)
    (datasets_dir / "broken.yaml").write_text("name: broken\ntables:\n  - name: x\n    time_column: t\n    colour: red\n")
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    # One import error, of the declarations check alone, naming the file and the key; every DAG file else parses.
    assert [Path(f).name for f in bag.import_errors] == ["tidemark_declarations.py"], bag.import_errors
    assert "broken.yaml" in next(iter(bag.import_errors.values()))
    assert "tables[0].colour" in next(iter(bag.import_errors.values()))
    for dag_id in ("tidemark_backfill", "tidemark_catchup"):
        choices = bag.dags[dag_id].params.get_param("dataset").schema["enum"]
        assert "offered" in choices and "ledgers" in choices and "broken" not in choices, dag_id
    assert {"tidemark_backfill__offered", "tidemark_catchup__offered"} <= set(bag.dags)
    assert not any(d.endswith("__broken") for d in bag.dags)
    assert any("broken.yaml" in e.message and "tables[0].colour" in e.message for e in catalog.errors())


def test_sql_dataset_loads_the_source_rows(
    datasets_dir: Path, dsn: str, source_pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", source_pg.dsn)
    with connect(source_pg.dsn) as src:
        src.execute("DROP TABLE IF EXISTS trips")
        src.execute("CREATE TABLE trips (pickup timestamptz NOT NULL, zone text NOT NULL, fare numeric(8,2),"
                    " paid boolean, secret text)")
        src.execute("INSERT INTO trips SELECT %s::timestamptz + g * interval '37 seconds', 'z' || (g %% 7),"
                    " (g %% 500) / 4.0, g %% 3 = 0, 'x' FROM generate_series(0, 2400) g", (START,))
        want = src.execute("SELECT pickup, zone, fare, paid FROM trips WHERE pickup < %s ORDER BY 1, 2",
                           (END,)).fetchall()
    ds = declare(datasets_dir, "trips", """\
        name: trips
        description: Taxi trips from the warehouse
        tables:
          - name: trips
            schema: user_sql
            time_column: pickup
            chunk_interval: 6 hours
            segmentby: [zone]
            columns:
              - {name: pickup, type: timestamptz}
              - {name: zone, type: text}
              - {name: fare, type: "numeric(8,2)", nullable: true}
              - {name: paid, type: boolean, nullable: true}
            source:
              kind: sql
              conn_id: warehouse
              query: SELECT * FROM trips WHERE pickup >= %(start)s AND pickup < %(end)s
        """)
    report = run_twice_and_check(dsn, ds, {"trips": want}, "3 hours")
    assert report["rows_in_window"] == {"trips": len(want)}


def test_files_dataset_loads_the_files_rows(
    datasets_dir: Path, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "lake"
    monkeypatch.setenv("TIDEMARK_FILES_ROOTS", str(data))  # outside the declarations' folder: allowed by name
    want = []
    for d in range(2):
        day = START + timedelta(days=d)
        folder = data / day.strftime("%Y/%m/%d")
        folder.mkdir(parents=True)
        times = [day + timedelta(seconds=45 * k) for k in range(1920)]
        part = [(t, f"st{k % 4}", float(k % 90) - 20.0) for k, t in enumerate(times)]
        pq.write_table(pa.table({"ts": pa.array([p[0] for p in part], pa.timestamp("us", "UTC")),
                                 "station": [p[1] for p in part], "temp": [p[2] for p in part],
                                 "ignored": [1] * len(part)}), folder / "obs.parquet", row_group_size=200)
        if day < END:
            want.extend(part)
    ds = declare(datasets_dir, "weather", f"""\
        name: weather
        tables:
          - name: observations
            schema: user_files
            time_column: ts
            chunk_interval: 6 hours
            segmentby: [station]
            columns:
              - {{name: ts, type: timestamptz}}
              - {{name: station, type: text}}
              - {{name: temp, type: real}}
            source:
              kind: files
              url: "file://{data}/{{start:%Y/%m/%d}}/*.parquet"
              format: parquet
        """)
    report = run_twice_and_check(dsn, ds, {"observations": sorted(want, key=lambda r: (r[0], r[1]))}, "4 hours")
    assert report["rows_in_window"] == {"observations": len(want)}


def test_python_dataset_feeds_two_tables_from_one_call(datasets_dir: Path, dsn: str) -> None:
    ds = declare(datasets_dir, "meters", """\
        name: meters
        source:
          kind: python
          callable: tests.dags.user_sources:meters
          count: tests.dags.user_sources:meters_count
          tip: tests.dags.user_sources:meters_tip
        tables:
          - name: readings
            schema: user_python
            time_column: t
            chunk_interval: 12 hours
            segmentby: [meter]
            columns:
              - {name: t, type: timestamptz}
              - {name: meter, type: text}
              - {name: kwh, type: double precision, nullable: true}
              - {name: tags, type: "text[]"}
          - name: hourly
            schema: user_python
            time_column: t
            chunk_interval: 12 hours
            columns:
              - {name: t, type: timestamptz}
              - {name: readings, type: integer}
        """)
    times = list(user_sources.minutes(START, END))
    readings = [tuple(user_sources.meter_rows(t).values()) for t in times]
    hourly = [(t, 60) for t in times if t.minute == 0]
    run_twice_and_check(dsn, ds, {"readings": sorted(readings, key=lambda r: (r[0], r[1])), "hourly": hourly},
                        "6 hours")
