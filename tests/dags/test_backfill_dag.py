"""tidemark_backfill under real Airflow (DagBag + dag.test()) against the real embedded engine."""

from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import NO_DUPLICATES, duplicate_keys, rows_in
from tidemark.timescale import columnstore, compressor
from tidemark.connection import connect
from tidemark.model.dataset import Dataset
from tidemark.flows.verify import source_counts

UTC = timezone.utc
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "tidemark_backfill.py"
DAG_DEFINITIONS = Path(__file__).resolve().parents[2] / "plugins" / "tidemark" / "airflow"


def load_dag(dag_id: str = "tidemark_backfill") -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE.parent))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def conf(ds: Dataset, start: datetime, hours: int, step: str = "3 hours", **extra: Any) -> dict[str, Any]:
    return {"dataset": ds.name, "start": start.isoformat(), "end": (start + timedelta(hours=hours)).isoformat(),
            "batch_interval": step, **extra}


def report_of(conn: psycopg.Connection, ds: Dataset) -> dict[str, Any]:
    row = conn.execute(
        "SELECT report FROM tidemark.runs WHERE dataset = %s AND state = 'succeeded' ORDER BY finished_at DESC LIMIT 1",
        (ds.name,),
    ).fetchone()
    assert row, "no successful run recorded"
    return row[0]


# --------------------------------------------------------------------------- integrity


def test_the_heap_is_frozen_only_where_airflow_parses_to_run_one_dag(airflow_db: Path) -> None:
    """A task runner / ``dags test`` (parsing context set) freezes the GC heap; other parsers are left alone."""
    probe = ("import atexit, gc, runpy, sys; atexit.register(lambda: print(gc.get_freeze_count()));"  # after ours
             " runpy.run_path(sys.argv[1]); print(gc.get_freeze_count())")
    found = {}
    for context in (None, DAG_FILE.stem):
        env = {k: v for k, v in os.environ.items() if not k.startswith("_AIRFLOW_PARSING_CONTEXT")}
        env["PYTHONPATH"] = str(DAG_FILE.parents[1] / "plugins")
        if context:
            env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = context
        done = subprocess.run([sys.executable, "-c", probe, str(DAG_FILE)], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        found[context] = [int(n) for n in done.stdout.split()[-2:]]  # after the parse, at exit
    assert found[None][0] == 0 and found[None][1] > 100_000  # a plain parse: frozen only at exit
    assert found[DAG_FILE.stem][0] > 100_000  # parsed to run: Airflow's import graph frozen at once


def test_dag_imports_without_database_or_connection(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_TIDEMARK_TIMESCALE", raising=False)
    dag = load_dag()
    assert dag.dag_id == DAG_FILE.stem
    assert dag.doc_md and "Resume" in dag.doc_md
    assert dag.timetable.__class__.__name__ == "NullTimetable", "the generic DAG never runs on a schedule"
    assert "dataset" in dag.params and dag.params.get_param("dataset").schema["enum"]
    own = load_dag("tidemark_backfill__ledgers")  # the demo's dataset declares schedule: "@daily"
    assert own.timetable.__class__.__name__ == "CronDataIntervalTimetable" and "dataset" not in own.params
    assert own.dag_display_name == "Tidemark backfill · ledgers" and "dataset:ledgers" in own.tags
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("title") and param.description and param.schema.get("type"), name
    ids = {t.task_id for t in dag.tasks}
    assert ids == {"plan", "insert_batch", "progressive_compress", "finalize"}
    for t in dag.tasks:
        assert t.task_display_name != t.task_id, f"{t.task_id} has no display name"
    assert dag.get_task("insert_batch").map_index_template == "{{ batch_label }}"
    sensor = dag.get_task("progressive_compress")
    assert sensor.mode == "reschedule" and sensor.retries >= 2
    assert dag.get_task("finalize").trigger_rule == "all_done"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    return imported + [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]


def test_dag_file_is_wiring_only() -> None:
    """The DAG files call the factory and nothing else; the DAGs it builds speak only Airflow's task SDK."""
    for dag_file in DAG_FILE.parent.glob("tidemark_*.py"):
        assert _imports(dag_file) == ["tidemark.airflow"], dag_file
        assert "psycopg" not in dag_file.read_text()
    for definition in ("backfill_dag.py", "catchup_dag.py", "live_dag.py", "factory.py"):
        airflow = [m for m in _imports(DAG_DEFINITIONS / definition) if m.startswith("airflow")]
        assert airflow and all(m.startswith(("airflow.sdk", "airflow.providers")) for m in airflow), (definition, airflow)
        assert "psycopg" not in (DAG_DEFINITIONS / definition).read_text()


@pytest.mark.parametrize(
    "bad",
    [
        {"dataset": "no_such_dataset"},
        {"start": "not a date"},
        {"end": "2024-13-45T00:00:00Z"},
        {"batch_interval": "soon"},
        {"batch_interval": ""},
        {"dry_run": "yes"},
    ],
)
def test_params_schema_rejects_bad_input(airflow_db: Path, bad: dict[str, Any]) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(load_dag().params)
    with pytest.raises(ParamValidationError):
        params.update(bad)
        params.validate()


def test_params_schema_accepts_a_good_trigger(airflow_db: Path) -> None:
    params = copy.deepcopy(load_dag().params)
    params.update({"dataset": "ledgers", "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-02T00:00:00Z",
                   "batch_interval": "6 hours", "dry_run": True})
    assert params.validate()["batch_interval"] == "6 hours"


# --------------------------------------------------------------------------- end to end


def test_backfill_end_to_end_exact_compressed_and_idempotent(registered_dataset: Dataset, airflow_conn: str, dsn: str) -> None:
    dag = load_dag()
    start = datetime(2024, 2, 1, tzinfo=UTC)
    run = dag.test(run_conf=conf(registered_dataset, start, 24))
    assert run.state == "success"
    expected = source_counts(registered_dataset, start, start + timedelta(hours=24))
    with connect(dsn) as conn:
        assert rows_in(conn, registered_dataset, start, start + timedelta(hours=24)) == expected
        assert duplicate_keys(conn, registered_dataset) == NO_DUPLICATES
        chunks = compressor.list_chunks(conn, registered_dataset)
        assert len(chunks) == 12 and all(c.is_compressed for c in chunks)
        report = report_of(conn, registered_dataset)
        assert report["rows_in_window"] == expected
        assert report["chunks"]["compressed"] == 12
        assert report["chunks"]["compressed_during_load"] >= 6  # while batches were still loading
        # Every mode tells what is stored and what it stands for. 3-hour batches share 6-hour chunks, so a direct
        # run cannot promise sorted chunks: they are written unordered and recompressed inside the run.
        assert report["bytes"]["stored"] > 0 and report["bytes"]["uncompressed"] > 1.5 * report["bytes"]["stored"]
        assert report["chunks"]["written_compressed"] + report["chunks"]["compressed_afterwards"] == 12
        if not report["write_mode"].startswith("direct"):
            assert report["bytes"]["ratio"] > 1.5

    again = dag.test(run_conf=conf(registered_dataset, start, 24))
    assert again.state == "success"
    with connect(dsn) as conn:
        assert rows_in(conn, registered_dataset, start, start + timedelta(hours=24)) == expected
        rerun = report_of(conn, registered_dataset)
        assert rerun["batches"]["loaded"] == 0 and rerun["batches"]["already_loaded"] == 8
        assert rerun["rows_loaded_total"] == 0


def test_scheduled_run_loads_its_data_interval(registered_dataset: Dataset, airflow_conn: str, dsn: str) -> None:
    """Empty start/end: the run's data interval (what scheduled runs and `airflow backfill create` get)."""
    day = datetime(2024, 3, 2, tzinfo=UTC)
    own = load_dag(f"tidemark_backfill__{registered_dataset.name}")  # the dataset's own DAG, scheduled @daily
    run = own.test(logical_date=day, run_conf={"batch_interval": "6 hours"})
    assert run.state == "success"
    assert (run.data_interval_start, run.data_interval_end) == (day - timedelta(days=1), day)
    with connect(dsn) as conn:
        assert rows_in(conn, registered_dataset, day - timedelta(days=2), day + timedelta(days=1)) == \
            source_counts(registered_dataset, day - timedelta(days=1), day)
        assert report_of(conn, registered_dataset)["batches"]["windows"] == 4


def test_dry_run_writes_nothing(registered_dataset: Dataset, airflow_conn: str, dsn: str) -> None:
    dag = load_dag()
    run = dag.test(run_conf=conf(registered_dataset, datetime(2024, 2, 1, tzinfo=UTC), 24, dry_run=True))
    assert run.state == "success"
    with connect(dsn) as conn:
        schema = registered_dataset.tables[0].schema
        assert conn.execute("SELECT to_regnamespace(%s)", (schema,)).fetchone()[0] is None


def test_failed_batch_stalls_compression_fails_the_run_and_resumes(
    registered_dataset: Dataset, airflow_conn: str, dsn: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    dag = load_dag()
    start = datetime(2024, 2, 1, tzinfo=UTC)
    k = 5  # [15 h, 18 h): inside chunk [12 h, 18 h); chunks [0, 6) and [6, 12) lie behind it
    monkeypatch.setenv("TIDEMARK_FAULTS", f"insert_batch.before_commit@{k}")
    monkeypatch.setenv("TIDEMARK_RETRY_DELAY", "0")
    run = dag.test(run_conf=conf(registered_dataset, start, 24))
    assert run.state == "failed"
    out = capfd.readouterr()
    assert f"batches [{k}] failed" in out.out + out.err
    with connect(dsn) as conn:
        state = {(c.hypertable, c.range_start): c.is_compressed for c in compressor.list_chunks(conn, registered_dataset)}
        direct = bool(columnstore.resolve(conn, registered_dataset))
        for table in ("ledgers", "transactions", "operations"):
            assert state[(table, start)] and state[(table, start + timedelta(hours=6))]
            if not direct:  # direct COPY writes every chunk compressed: there is nothing to hold back
                assert not state[(table, start + timedelta(hours=12))]
                assert not state[(table, start + timedelta(hours=18))]
        compressed_at = conn.execute(
            "SELECT max(compressed_at) FROM tidemark.compression_log WHERE dataset = %s", (registered_dataset.name,)
        ).fetchone()[0]
        assert compressed_at is not None  # compressed while batch k had not finished: progressive

    monkeypatch.delenv("TIDEMARK_FAULTS")
    resumed = dag.test(run_conf=conf(registered_dataset, start, 24))
    assert resumed.state == "success"
    expected = source_counts(registered_dataset, start, start + timedelta(hours=24))
    with connect(dsn) as conn:
        assert rows_in(conn, registered_dataset, start, start + timedelta(hours=24)) == expected
        assert duplicate_keys(conn, registered_dataset) == NO_DUPLICATES
        assert all(c.is_compressed for c in compressor.list_chunks(conn, registered_dataset))
        report = report_of(conn, registered_dataset)
        assert report["batches"]["loaded"] == 1 and report["batches"]["already_loaded"] == 7
        last_batch_commit = conn.execute(
            "SELECT max(committed_at) FROM tidemark.batch_ledger WHERE dataset = %s", (registered_dataset.name,)
        ).fetchone()[0]
        assert compressed_at < last_batch_commit, "chunks were compressed before the last batch finished"
