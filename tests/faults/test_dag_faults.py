"""Faults and secrets at the DAG level: real Airflow (dag.test()) against the real engine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.dags.test_backfill_dag import load_dag
from tidemark.flows import backfill
from tidemark.timescale import compressor
from tidemark.connection import connect, factory
from tidemark.model.dataset import Dataset

UTC = timezone.utc
START = datetime(2024, 10, 1, tzinfo=UTC)
SECRET = "S3cret-Tidemark-pw-91f2"


def conf(ds: Dataset, hours: int = 12) -> dict[str, Any]:
    return {"dataset": ds.name, "start": START.isoformat(), "end": (START + timedelta(hours=hours)).isoformat(),
            "batch_interval": "3 hours"}


def test_sensor_failing_mid_run_is_retried_and_the_run_completes(
    registered_dataset: Dataset, airflow_conn: str, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDEMARK_FAULTS", "sensor.poke@*x1")
    monkeypatch.setenv("TIDEMARK_FAULT_DIR", str(tmp_path))
    monkeypatch.setenv("TIDEMARK_RETRY_DELAY", "0")
    run = load_dag().test(run_conf=conf(registered_dataset))
    assert run.state == "success"
    sensor = [ti for ti in run.get_task_instances() if ti.task_id == "progressive_compress"][0]
    assert sensor.try_number >= 2, "the sensor should have failed once and been retried"
    with connect(dsn) as conn:
        assert all(c.is_compressed for c in compressor.list_chunks(conn, registered_dataset))


def test_a_run_overlapping_a_live_claim_is_refused_naming_it(registered_dataset: Dataset, airflow_conn: str, dsn: str, capfd: pytest.CaptureFixture[str]) -> None:
    req = backfill.BackfillRequest.from_params(conf(registered_dataset, 24))
    backfill.plan_run(factory(dsn), req, "external-loader")
    run = load_dag().test(run_conf=conf(registered_dataset))
    assert run.state == "failed"
    out = capfd.readouterr()
    assert "overlaps backfill run 'external-loader'" in out.out + out.err
    with connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM tidemark.batch_ledger WHERE dataset = %s",
                            (registered_dataset.name,)).fetchone()[0] == 0


def test_no_password_in_logs_xcom_or_report(
    registered_dataset: Dataset, airflow_conn: str, dsn: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    monkeypatch.setenv("AIRFLOW_CONN_TIDEMARK_TIMESCALE", dsn.split("?")[0].replace(":postgres@", f":{SECRET}@"))
    run = load_dag().test(run_conf=conf(registered_dataset))
    assert run.state == "success"
    out = capfd.readouterr()
    assert SECRET not in out.out + out.err
    with create_session() as session:
        values = [str(x.value) for x in session.query(XComModel).filter(XComModel.run_id == run.run_id)]
    assert values and not any(SECRET in v for v in values)
    with connect(dsn) as conn:
        reports = conn.execute("SELECT report::text FROM tidemark.runs WHERE dataset = %s", (registered_dataset.name,)).fetchall()
    assert reports and not any(SECRET in (r[0] or "") for r in reports)


def test_unreachable_database_fails_with_the_connection_id_not_a_password(
    registered_dataset: Dataset, airflow_conn: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TIDEMARK_TIMESCALE", f"postgresql://postgres:{SECRET}@127.0.0.1:1/postgres")
    run = load_dag().test(run_conf=conf(registered_dataset))
    assert run.state == "failed"
    out = capfd.readouterr()
    text = out.out + out.err
    assert "cannot connect to the database (Airflow connection 'tidemark_timescale' -> 127.0.0.1:1/postgres)" in text
    assert SECRET not in text
