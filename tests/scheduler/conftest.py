"""One PostgreSQL 15 cluster (embedded/pgctl) per test session for Airflow's metadata databases, and one
real Airflow deployment per session on it: api-server, dag-processor, scheduler and triggerer
(LocalExecutor), wired to the session's embedded TimescaleDB engine.

Booting a deployment (migrate, start four components, parse the DAG) costs about a minute on the
2-core dev machine, so the tests share one; they stay independent by using disjoint data windows of
the demo's `ledgers` dataset (TIDEMARK_DEMO=on). Its scheduler creates scheduled runs (use_job_schedule),
but the DAGs stay paused (new DAGs are) until the `unpaused` fixture unpauses the generic
tidemark_backfill and ledgers' own tidemark_backfill__ledgers (@daily), which makes the scheduler create
the run of the latest data interval of the latter only (catchup=False): test_cli_reruns checks it. The deployment's processes are always stopped in
teardown (SIGTERM to each process group, then SIGKILL to whatever is left in its session), its
metadata database is dropped, and the module fails if any process survives; the cluster is stopped
at the end of the session and must be gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import (
    AirflowDeployment,
    PostgresCluster,
    clear_window,
    describe,
    fault_env,
    postgres_cluster,
    scheduler_deployment,
)
from tidemark.declare import catalog
from tidemark.connection import connect

# Scheduler defaults for the tests. The poke/wait intervals are the DAG's short-interval setting
# measured on a PostgreSQL metadata DB (apache/airflow#71172, see tests/scheduler/measure_71172.py).
TIDEMARK_KNOBS = {
    "TIDEMARK_POKE_INTERVAL": "10",
    "TIDEMARK_WAIT_INTERVAL": "10",
    "TIDEMARK_MAX_PARALLEL_BATCHES": "4",
    "TIDEMARK_RETRY_DELAY": "2",
}


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresCluster]:
    with postgres_cluster() as cluster:
        yield cluster
    assert not cluster.running(), f"the metadata PostgreSQL cluster in {cluster.data} is still running"


DAG_ID = "tidemark_backfill"  # the generic DAG: runs triggered with a `dataset` in their conf
LEDGERS_DAG_ID = "tidemark_backfill__ledgers"  # the demo dataset's own DAG, scheduled @daily: CLI reruns

@pytest.fixture(scope="session")
def unpaused(deployment: AirflowDeployment, dsn: str) -> datetime:
    """Unpause tidemark_backfill (once); returns when. Backfill runs need it: the scheduler queues no
    task of a paused DAG. The scheduler then starts the run of the latest complete day.

    The wait for the booting deployment is here, not in `deployment`, so that fixtures requested
    before this one (test_cli_reruns' oracle load) overlap with the boot.
    """
    deployment.wait_until_dag_ready(DAG_ID)
    deployment.wait_until_dag_ready(LEDGERS_DAG_ID)
    at = datetime.now(UTC)
    today = at.replace(hour=0, minute=0, second=0, microsecond=0)
    with connect(dsn) as conn:
        clear_window(conn, catalog.get("ledgers"), today - timedelta(days=2), today + timedelta(days=1))
    for dag_id in (DAG_ID, LEDGERS_DAG_ID):
        deployment.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    return at


@pytest.fixture
def airflow_home(tmp_path: Path) -> Path:
    home = tmp_path / "airflow-home"
    home.mkdir()
    return home


@pytest.fixture(scope="session")
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg: PostgresCluster, dsn: str
) -> Iterator[AirflowDeployment]:
    """The session's deployment, with the logs shown if any test failed."""
    home = tmp_path_factory.mktemp("airflow-home")
    failed_before = request.session.testsfailed
    extra = {**TIDEMARK_KNOBS, "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True", **fault_env(home)}
    with scheduler_deployment(pg, dsn, home=home, extra_env=extra) as dep:
        yield dep  # booting: `unpaused` waits until it serves the DAG
    if request.session.testsfailed > failed_before:
        print(f"\n===== Airflow process logs ({home}) =====\n{dep.logs_digest()}")
    if dep.killed:
        print(f"\n[scheduler tests] {len(dep.killed)} process(es) needed SIGKILL after SIGTERM:\n" + "\n".join(dep.killed))
    left = dep.leftovers()
    assert not left, f"Airflow processes left running:\n{describe(left)}"
