"""Issue 13 at the DAG level: real Airflow (DagBag, dag.test()) against real embedded engines.

Rival claims and the execution API (1), retries on every task (2), the retry
delay after an engine death (3).
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EmbeddedEngine, registered, unique_dataset
from tests.dags.test_backfill_dag import load_dag
from tidemark.flows import backfill
from tidemark.connection import connect, factory
from tidemark.model.dataset import Dataset

UTC = timezone.utc
START = datetime(2024, 11, 1, tzinfo=UTC)


def conf(ds: Dataset, hours: int = 6, step: str = "3 hours") -> dict[str, Any]:
    return {"dataset": ds.name, "start": START.isoformat(), "end": (START + timedelta(hours=hours)).isoformat(),
            "batch_interval": step}


def tries(run: Any) -> dict[str, int]:
    return {f"{ti.task_id}[{ti.map_index}]": ti.try_number for ti in run.get_task_instances()}


# --------------------------------------------------------------------------- 1. rival claims


def claim_as(dsn: str, ds: Dataset, run_key: str) -> None:
    """A rival claim on the whole window, as a run of that Airflow key would have made it."""
    backfill.plan_run(factory(dsn), backfill.BackfillRequest.from_params(conf(ds, 12)), run_key)


def claim_state(dsn: str, run_key: str) -> str:
    with connect(dsn) as conn:
        return str(conn.execute("SELECT state FROM tidemark.runs WHERE run_id = %s", (run_key,)).fetchone()[0])


def test_a_rival_whose_state_the_execution_api_cannot_tell_keeps_its_claim(
    registered_dataset: Dataset, airflow_conn: str, dsn: str, capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The plan task's real get_dagrun_state call fails (the request never reaches a route); the rival stays alive."""
    rival = "tidemark_backfill/manual__rival\x01"  # a control character: the API client refuses the request
    claim_as(dsn, registered_dataset, rival)
    run = load_dag().test(run_conf=conf(registered_dataset))
    assert run.state == "failed"
    text = "".join(capfd.readouterr()) + caplog.text  # where the task's log lands depends on earlier tests
    assert "could not read the state of run tidemark_backfill/manual__rival" in text
    assert "counting run tidemark_backfill/manual__rival" in text and "as alive" in text
    assert "overlaps backfill run 'tidemark_backfill/manual__rival" in text
    assert claim_state(dsn, rival) == "running", "a rival Airflow could not vouch for lost its claim"
    with connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM tidemark.batch_ledger WHERE dataset = %s",
                            (registered_dataset.name,)).fetchone()[0] == 0


def test_a_route_miss_is_not_a_missing_run(
    registered_dataset: Dataset, airflow_conn: str, dsn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A 404 that is not the API's "Dag run not found" (here: no such route) proves nothing about the run."""
    rival = "tidemark_backfill/manual__a/b/c"
    claim_as(dsn, registered_dataset, rival)
    run = load_dag().test(run_conf=conf(registered_dataset))
    assert run.state == "failed"
    assert "overlaps backfill run 'tidemark_backfill/manual__a/b/c'" in "".join(capfd.readouterr())
    assert claim_state(dsn, rival) == "running"


def test_a_rival_the_execution_api_says_does_not_exist_is_abandoned(
    registered_dataset: Dataset, airflow_conn: str, dsn: str
) -> None:
    rival = "tidemark_backfill/manual__never_existed"
    claim_as(dsn, registered_dataset, rival)
    run = load_dag().test(run_conf=conf(registered_dataset))
    assert run.state == "success"
    assert claim_state(dsn, rival) == "abandoned"


# --------------------------------------------------------------------------- 2. + 3. retries


@pytest.mark.parametrize("dag_id", ["tidemark_backfill", "tidemark_catchup", "tidemark_backfill__ledgers",
                                    "tidemark_catchup__ledgers", "tidemark_live__ledgers"])
def test_every_task_retries_after_the_one_configured_delay(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, dag_id: str
) -> None:
    monkeypatch.setenv("TIDEMARK_RETRIES", "3")
    monkeypatch.setenv("TIDEMARK_RETRY_DELAY", "7")
    dag = load_dag(dag_id)
    got = {t.task_id: (t.retries, t.retry_delay) for t in dag.tasks}
    assert got == {t.task_id: (3, timedelta(seconds=7)) for t in dag.tasks}


def test_plan_rides_out_a_briefly_unreachable_database(
    private_engine: EmbeddedEngine, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan task's first try finds the database port dead; the engine comes up then, and a retry finds it."""
    private_engine.start()  # initialise the data dir now, so the restart below is quick (about 2 s)
    private_engine.stop()
    monkeypatch.setenv("AIRFLOW_CONN_TIDEMARK_TIMESCALE", private_engine.dsn.split("?")[0])
    monkeypatch.setenv("TIDEMARK_RETRY_DELAY", "2")
    monkeypatch.setenv("TIDEMARK_RETRIES", "10")  # a slow machine: the run stops retrying as soon as one succeeds
    listener = socket.create_server(("127.0.0.1", private_engine.port))

    def refuse_once_then_start() -> None:
        client, _ = listener.accept()  # the first connection attempt: hang up on it
        client.close()
        listener.close()
        private_engine.start()

    starter = threading.Thread(target=refuse_once_then_start)
    with registered(unique_dataset_later()) as ds:
        starter.start()
        try:
            run = load_dag().test(run_conf=conf(ds, hours=3))
        finally:
            starter.join(timeout=120)
    assert run.state == "success", tries(run)
    assert tries(run)["plan[-1]"] >= 2, "the first try should have met the database down"


def unique_dataset_later() -> Dataset:
    """A dataset description only; plan creates it in the database (which is not up yet)."""
    import uuid

    from tidemark.demo.ledgers import ledgers_dataset

    tag = uuid.uuid4().hex[:8]
    return ledgers_dataset(name=f"ledgers_{tag}", schema=f"u_{tag}")


def test_after_an_engine_death_the_run_fails_after_the_configured_delay(
    private_engine: EmbeddedEngine, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 mid-load: every task fails its retries TIDEMARK_RETRY_DELAY apart, not Airflow's 5 minutes."""
    private_engine.start()
    with connect(private_engine.dsn) as conn:
        ds = unique_dataset(conn)
    marker = tmp_path / "marker"
    monkeypatch.setenv("AIRFLOW_CONN_TIDEMARK_TIMESCALE", private_engine.dsn.split("?")[0])
    monkeypatch.setenv("TIDEMARK_RETRY_DELAY", "1")
    monkeypatch.setenv("TIDEMARK_RETRIES", "1")
    monkeypatch.setenv("TIDEMARK_FAULTS", "insert_batch.pause_after_commit@0x1")
    monkeypatch.setenv("TIDEMARK_FAULT_DIR", str(tmp_path / "counters"))
    monkeypatch.setenv("TIDEMARK_FAULT_MARKER", str(marker))
    monkeypatch.setenv("TIDEMARK_FAULT_PAUSE", "3")

    def kill_when_paused() -> None:
        for _ in range(1200):
            if marker.exists():
                private_engine.kill9()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_paused)
    with registered(ds):
        killer.start()
        t0 = time.monotonic()
        run = load_dag().test(run_conf=conf(ds, hours=12))
        elapsed = time.monotonic() - t0
        killer.join()
    assert marker.exists(), "the fault never paused batch 0"
    assert run.state == "failed"
    got = tries(run)
    assert got["finalize[-1]"] == 2, got  # finalize met the dead engine, waited 1 s, failed again
    assert elapsed < 120, f"the run took {elapsed:.0f} s to fail after the engine died"


def test_the_supervisors_relayed_answers_are_read_the_same_way() -> None:
    """Under a real worker the supervisor relays the API's answer as AirflowRuntimeError (shape as in
    airflow.sdk.execution_time.supervisor): only its 'Dag run not found' means gone."""
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    from tidemark.airflow.context import _definitely_not_found

    def relayed(status: int | None, body: Any) -> AirflowRuntimeError:
        return AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR,
                                                 detail={"status_code": status, "message": "m", "detail": body}))

    assert _definitely_not_found(relayed(404, {"detail": {"reason": "not_found", "message": "Dag run ... was not found"}}))
    assert not _definitely_not_found(relayed(404, {"detail": "Not Found"}))  # a route miss
    assert not _definitely_not_found(relayed(500, {"detail": {"reason": "not_found"}}))
    assert not _definitely_not_found(relayed(None, None))  # transport error (ConnectError, timeout)
    assert not _definitely_not_found(relayed(403, {"detail": "Forbidden"}))
