"""A real Airflow deployment per test: its own AIRFLOW_HOME, SQLite metadata DB, free API port.

The deployment's processes are always stopped in teardown (SIGTERM to each process group, then
SIGKILL to whatever is left in its session) and the test fails if any of them survives.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import AirflowDeployment, deployment_env, describe, free_port


def _tidemark_knobs() -> dict[str, str]:
    return {
        "TIDEMARK_POKE_INTERVAL": "10",  # >= 10 s under a real scheduler (apache/airflow#71172)
        "TIDEMARK_MAX_PARALLEL_BATCHES": "4",
        "TIDEMARK_RETRY_DELAY": "2",
    }


@pytest.fixture
def airflow_home(tmp_path: Path) -> Path:
    home = tmp_path / "airflow-home"
    home.mkdir()
    return home


@pytest.fixture
def deployment(airflow_home: Path, dsn: str, request: pytest.FixtureRequest) -> Iterator[AirflowDeployment]:
    """Scheduler + dag-processor + api-server (LocalExecutor, SQLite) wired to the test engine."""
    port = free_port()
    dep = AirflowDeployment(airflow_home, deployment_env(airflow_home, dsn=dsn, api_port=port, extra=_tidemark_knobs()), port)
    dep.cli("db", "migrate")
    try:
        dep.start("api-server", "api-server", "--port", str(port), "--host", "127.0.0.1")
        dep.start("dag-processor", "dag-processor")
        dep.start("scheduler", "scheduler")
        yield dep
    finally:
        killed = dep.stop()
        failed = request.node.stash.get(_FAILED, False)
        if failed:
            print(f"\n===== Airflow process logs ({airflow_home}) =====\n{dep.logs_digest()}")
        if killed:
            print(f"\n[scheduler tests] {len(killed)} process(es) needed SIGKILL after SIGTERM:\n" + "\n".join(killed))
        left = dep.leftovers()
        assert not left, f"Airflow processes left running:\n{describe(left)}"


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report
