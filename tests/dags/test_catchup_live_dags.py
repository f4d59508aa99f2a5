"""tidemark_catchup and tidemark_live under real Airflow (dag.test()) against the real engine."""

from __future__ import annotations

from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import EmbeddedEngine, rows_in
from tests.dags.test_backfill_dag import load_dag
from tidemark.flows import catchup
from tidemark.state import cursors
from tidemark.declare import catalog
from tidemark.model.timeparse import format_interval, parse_interval
from tidemark.connection import connect
from tidemark.model.dataset import Dataset
from tidemark.flows.verify import source_counts

UTC = timezone.utc
START = datetime(2024, 7, 1, tzinfo=UTC)


def counts(dsn: str, ds: Dataset, start: datetime, end: datetime) -> dict[str, int]:
    with connect(dsn) as conn:
        return rows_in(conn, ds, start, end)


def cursor(dsn: str, ds: Dataset) -> datetime | None:
    with connect(dsn) as conn:
        return cursors.position(conn, ds.name)


def catchup_conf(ds: Dataset, hours: int = 3, **kw: Any) -> dict[str, Any]:
    return {"dataset": ds.name, "start": START.isoformat(), "end": (START + timedelta(hours=hours)).isoformat(),
            "batch_interval": "30 minutes", **kw}


def test_catchup_dag_publishes_all_at_once(registered_dataset: Dataset, airflow_conn: str, dsn: str) -> None:
    end = START + timedelta(hours=3)
    run = load_dag("tidemark_catchup").test(run_conf=catchup_conf(registered_dataset))
    assert run.state == "success"
    assert counts(dsn, registered_dataset, START, end) == source_counts(registered_dataset, START, end)
    assert cursor(dsn, registered_dataset) == end
    # This catchup's own staging is gone (other tests' failed catchups keep theirs on the shared engine,
    # by design, which made a global count order-dependent).
    staging = catchup.staging_schema(registered_dataset.name, START, end, format_interval(parse_interval("30 minutes")))
    with connect(dsn) as conn:
        assert conn.execute("SELECT to_regnamespace(%s)", (staging,)).fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM tidemark.staging_manifest WHERE staging = %s",
                            (staging,)).fetchone()[0] == 0


def test_catchup_dag_with_a_failed_batch_publishes_nothing_then_resumes(
    registered_dataset: Dataset, airflow_conn: str, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    end = START + timedelta(hours=3)
    monkeypatch.setenv("TIDEMARK_FAULTS", "stage_batch.before_commit@2")
    monkeypatch.setenv("TIDEMARK_RETRY_DELAY", "0")
    dag = load_dag("tidemark_catchup")
    assert dag.test(run_conf=catchup_conf(registered_dataset)).state == "failed"
    assert sum(counts(dsn, registered_dataset, START - timedelta(days=1), end + timedelta(days=1)).values()) == 0
    assert cursor(dsn, registered_dataset) == START
    monkeypatch.delenv("TIDEMARK_FAULTS")
    assert dag.test(run_conf=catchup_conf(registered_dataset)).state == "success"
    assert counts(dsn, registered_dataset, START, end) == source_counts(registered_dataset, START, end)
    assert cursor(dsn, registered_dataset) == end


def test_live_dag_ingests_below_threshold_and_hands_over_above(
    airflow_db: Path, private_engine: EmbeddedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an engine of its own with the demo's `ledgers` dataset: its live DAG hands over to its own catchup DAG."""
    from airflow.models.dagrun import DagRun

    private_engine.start()
    dsn = private_engine.dsn
    monkeypatch.setenv("AIRFLOW_CONN_TIDEMARK_TIMESCALE", dsn.split("?")[0])
    live_dataset = catalog.get("ledgers")
    dag = load_dag("tidemark_live__ledgers")  # the demo's dataset declares a live block
    with connect(dsn) as conn:
        from tidemark.timescale.schema import ensure_schema

        ensure_schema(conn, live_dataset)
        cursors.initialise(conn, live_dataset.name, START, by="test")
    base = {"unit": "5 minutes", "lag_threshold": "1 hour", "max_units": 2}
    assert dag.test(run_conf={**base, "tip": (START + timedelta(minutes=12)).isoformat()}).state == "success"
    assert cursor(dsn, live_dataset) == START + timedelta(minutes=10)
    assert dag.test(run_conf={**base, "tip": (START + timedelta(minutes=16)).isoformat()}).state == "success"
    assert cursor(dsn, live_dataset) == START + timedelta(minutes=15)
    assert counts(dsn, live_dataset, START, START + timedelta(hours=3)) == source_counts(live_dataset,
        START, START + timedelta(minutes=15)
    )

    before = counts(dsn, live_dataset, START, START + timedelta(days=1))
    far = START + timedelta(hours=2, minutes=3)
    assert dag.test(run_conf={**base, "tip": far.isoformat()}).state == "success"
    assert counts(dsn, live_dataset, START, START + timedelta(days=1)) == before, "live wrote while handing over"
    assert cursor(dsn, live_dataset) == START + timedelta(minutes=15)
    run_id = f"catchup__{live_dataset.name}__{(START + timedelta(minutes=15)).strftime('%Y%m%dT%H%M%S')}"
    triggered = DagRun.find(dag_id="tidemark_catchup__ledgers", run_id=run_id)
    assert len(triggered) == 1
    assert triggered[0].conf == {"dataset": live_dataset.name, "start": (START + timedelta(minutes=15)).isoformat(),
                                 "end": (START + timedelta(hours=2)).isoformat(), "batch_interval": "15 minutes"}
    # While that catchup is queued, live only waits.
    assert dag.test(run_conf={**base, "tip": far.isoformat()}).state == "success"
    assert counts(dsn, live_dataset, START, START + timedelta(days=1)) == before
    assert len(DagRun.find(dag_id="tidemark_catchup__ledgers", run_id=run_id)) == 1
