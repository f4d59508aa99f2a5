"""Shared fixtures: a real embedded TimescaleDB per test session (never a mock).

If ``TIDEMARK_TEST_DSN`` is set, the database tests run against that server
instead. An engine that cannot start fails the run; nothing here skips.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tidemark import demo
from tidemark.declare import catalog
from tidemark.connection import connect
from tidemark.model.dataset import Dataset
from tidemark.demo.ledgers import ledgers_dataset
from tidemark.timescale.schema import ensure_schema, table_ident
from tidemark.flows.verify import window_counts

demo.enable()  # the ledgers dataset and the synthetic source kind, as the DAG files offer them

REPO = Path(__file__).resolve().parents[1]
DBCTL = REPO / "embedded" / "dbctl"

# Airflow for DAG tests: a private AIRFLOW_HOME with a migrated SQLite metadata DB, set at import,
# before anything imports Airflow, so the tests never touch a developer's own installation.
# Reused if this module is imported a second time (as `tests.conftest` by test modules).
_HOME = Path(os.environ.get("TIDEMARK_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="tidemark-airflow-"))
os.environ.update(
    {
        "TIDEMARK_TEST_AIRFLOW_HOME": str(_HOME),
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "TIDEMARK_POKE_INTERVAL": "1",
        # Airflow writes a generated secret into airflow.cfg on its first `db migrate`; a test that imports
        # Airflow before that (any airflow.sdk import) would hold a config without one. Set it up front.
        "AIRFLOW__API_AUTH__JWT_SECRET": os.environ.get("AIRFLOW__API_AUTH__JWT_SECRET") or uuid.uuid4().hex,
        "TIDEMARK_RETRY_DELAY": "1",  # every task retries (TIDEMARK_RETRIES, 2): keep the waits short
        # The demo's `ledgers` is what most tests load (a test of a deployment without it sets it off).
        "TIDEMARK_DEMO": os.environ.get("TIDEMARK_DEMO") or "on",
    }
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedEngine:
    """One embedded engine process, driven through the same dbctl a user runs."""

    def __init__(self, data_dir: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.extra_env = env or {}

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"

    @property
    def log_file(self) -> Path:
        return Path(f"{self.data_dir}.log")

    def _ctl(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.extra_env, "TIDEMARK_DB_DATA": str(self.data_dir), "TIDEMARK_DB_PORT": str(self.port)}
        return subprocess.run([str(DBCTL), command], env=env, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        done = self._ctl("start")
        if done.returncode != 0:
            raise RuntimeError(f"embedded engine failed to start:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def stop(self) -> None:
        self._ctl("stop")

    @property
    def pid(self) -> int:
        return int(Path(f"{self.data_dir}.pid").read_text().strip())

    def kill9(self) -> None:
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise RuntimeError(f"engine pid {pid} survived SIGKILL")


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEngine | None]:
    if os.environ.get("TIDEMARK_TEST_DSN"):
        yield None
        return
    eng = EmbeddedEngine(tmp_path_factory.mktemp("engine") / "db", free_port())
    eng.start()
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture(scope="session")
def dsn(engine: EmbeddedEngine | None) -> str:
    return os.environ.get("TIDEMARK_TEST_DSN") or engine.dsn  # type: ignore[union-attr]


@functools.cache
def is_embedded(dsn: str) -> bool:
    """Whether ``dsn`` is the embedded engine (WASM PostgreSQL: one shared session, no background jobs)."""
    with connect(dsn) as c:
        return "emscripten" in str(c.execute("SELECT version()").fetchone()[0]).lower()  # type: ignore[index]


EMBEDDED_MARKERS = ("single_session", "embedded")


@pytest.fixture(autouse=True)
def _embedded_only(request: pytest.FixtureRequest) -> None:
    """Skip a test marked ``single_session`` or ``embedded`` against a real server (TIDEMARK_TEST_DSN).

    ``single_session`` tests the embedded engine's one shared session; ``embedded`` needs the engine itself
    (its superuser writes TimescaleDB's catalog, which a loader role on a real server may not).
    """
    marker = next((m for m in EMBEDDED_MARKERS if request.node.get_closest_marker(m) is not None), None)
    if marker is None:
        return
    dsn = request.getfixturevalue("dsn")
    if not os.environ.get("TIDEMARK_TEST_DSN"):
        # The suite's own engine (CI, make test): never skipped; an engine not recognised fails the test instead.
        assert is_embedded(dsn), "the suite started its embedded engine, but version() does not say emscripten"
        return
    if not is_embedded(dsn):
        pytest.skip(f"marked {marker}: {_MARKER_WHY[marker]}")


_MARKER_WHY = {
    "single_session": "assumes the embedded engine's one shared session; TIDEMARK_TEST_DSN is a real server",
    "embedded": "needs the embedded engine itself (writes TimescaleDB's catalog); TIDEMARK_TEST_DSN is a real server",
}


@pytest.fixture
def private_engine(tmp_path: Path) -> Iterator[EmbeddedEngine]:
    """An engine of the test's own, for tests that kill or reconfigure it."""
    eng = EmbeddedEngine(tmp_path / "db", free_port())
    yield eng
    eng.stop()


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection]:
    with connect(dsn) as c:
        yield c


def unique_dataset(conn: psycopg.Connection) -> Dataset:
    """A fresh copy of the ledgers dataset under its own name and schema."""
    tag = uuid.uuid4().hex[:8]
    ds = ledgers_dataset(name=f"ledgers_{tag}", schema=f"t_{tag}")
    ensure_schema(conn, ds)
    return ds


def unschedule_policies(conn: psycopg.Connection, ds: Dataset) -> None:
    """Switch the dataset's jobs off, as a run's plan does: on a real server the compression policy would
    otherwise compress a test's chunks while it compresses them by hand (the embedded engine runs no jobs)."""
    for table in ds.tables:
        conn.execute("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
                     " WHERE hypertable_schema = %s AND hypertable_name = %s", (table.schema, table.name))


@pytest.fixture
def dataset(conn: psycopg.Connection) -> Dataset:
    return unique_dataset(conn)


@contextlib.contextmanager
def registered(ds: Dataset) -> Iterator[Dataset]:
    """Make a ledgers-shaped dataset known to the registry (DAG params, tasks) while in use."""
    schema = ds.tables[0].schema
    catalog.register(ds.name, lambda: ledgers_dataset(name=ds.name, schema=schema))
    try:
        yield catalog.get(ds.name)
    finally:
        catalog.unregister(ds.name)


@pytest.fixture
def registered_dataset() -> Iterator[Dataset]:
    """A ledgers dataset under a fresh name and schema, known to the registry (DAG params, tasks).

    Nothing is created in the database: the code under test must do that.
    """
    tag = uuid.uuid4().hex[:8]
    with registered(ledgers_dataset(name=f"ledgers_{tag}", schema=f"r_{tag}")) as ds:
        yield ds


# Natural keys of the ledgers dataset's tables: a duplicate is a repeated key.
KEYS = {
    "ledgers": ("sequence",),
    "transactions": ("ledger_sequence", "tx_index"),
    "operations": ("ledger_sequence", "tx_index", "op_index"),
}


def rows_in(conn: psycopg.Connection, ds: Dataset, start: datetime, end: datetime) -> dict[str, int]:
    return window_counts(conn, ds, [(start, end)])[0]


def duplicate_keys(conn: psycopg.Connection, ds: Dataset) -> dict[str, int]:
    out = {}
    for t in ds.tables:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in KEYS[t.name])
        q = sql.SQL("SELECT count(*) FROM (SELECT {} FROM {} GROUP BY {} HAVING count(*) > 1) d").format(
            cols, table_ident(t), cols
        )
        out[t.name] = conn.execute(q).fetchone()[0]
    return out


NO_DUPLICATES = {name: 0 for name in KEYS}


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


def load_through_library(
    dsn: str, req: Any, run_id: str, *, only: int | None = None, fail: Any = frozenset()
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, str], dict[int, dict[str, Any]]]:
    """Plan, then the first ``only`` batches in order with a poke after each; batches in ``fail`` count as failed."""
    from tidemark.flows import backfill, progressive
    from tidemark.connection import factory

    connect_ = factory(dsn)
    planned = backfill.plan_run(connect_, req, run_id)
    summary, batches = planned["plan"], planned["batches"]
    states: dict[int, str] = {}
    results: dict[int, dict[str, Any]] = {}
    for b in batches[:only]:
        if b["index"] in fail:
            states[b["index"]] = "failed"
            continue
        results[b["index"]] = backfill.insert_batch(connect_, summary, b)
        states[b["index"]] = "success"
        progressive.poke(connect_, summary, states)
    return summary, batches, states, results


PGCTL = REPO / "embedded" / "pgctl"


class PostgresServer:
    """A real PostgreSQL 15 cluster (Debian's postgresql-15) in a temp dir, driven by embedded/pgctl."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TIDEMARK_PG_DATA": str(self.data_dir), "TIDEMARK_PG_PORT": str(self.port)}
        return subprocess.run([str(PGCTL), *args], env=env, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        done = self._ctl("start")
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL failed to start:\n{done.stdout}\n{done.stderr}")

    def stop(self) -> None:
        self._ctl("stop")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture(scope="session")
def source_pg() -> Iterator[PostgresServer]:
    """A second, real database for SQL sources (never the target engine)."""
    import shutil

    base = Path(tempfile.mkdtemp(prefix="tidemark-pg-"))
    base.chmod(0o755)  # as root the server runs as the postgres user, which must reach the data dir
    server = PostgresServer(base / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
