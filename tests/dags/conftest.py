"""Airflow for DAG tests: a private AIRFLOW_HOME with a migrated SQLite metadata DB.

The environment is set at import, before anything imports Airflow, so the
tests never touch a developer's own Airflow installation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="tidemark-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "TIDEMARK_POKE_INTERVAL": "1",
    }
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, env=os.environ, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return _HOME


@pytest.fixture
def airflow_conn(dsn: str, airflow_db: Path) -> Iterator[str]:
    """Point the tidemark_timescale Airflow connection at the test engine."""
    os.environ["AIRFLOW_CONN_TIDEMARK_TIMESCALE"] = dsn.split("?")[0]
    yield dsn
