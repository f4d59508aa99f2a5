"""A real Airflow deployment for tests and benchmarks: api-server, dag-processor, scheduler and
triggerer as separate processes (LocalExecutor) on a PostgreSQL metadata database.

The metadata database lives in a PostgreSQL 15 cluster managed by ``embedded/pgctl`` (the same
script `make airflow` uses), never SQLite: SQLite is one writer at a time, and a scheduler, an
api-server, a triggerer and a CLI writing at once ended in ``database is locked`` (issue 14).

Each component runs in a session (and process group) of its own, with stdout/stderr in files under
the deployment's AIRFLOW_HOME, so a caller can stop the whole tree for certain and show the logs when
it fails. Nothing here touches a developer's Airflow installation: the environment is built from
scratch (every inherited ``AIRFLOW*`` / ``TIDEMARK_*`` variable is dropped first).

API for other callers (bench/bench_airflow.py)::

    with postgres_cluster() as pg, scheduler_deployment(pg, engine_dsn, extra_env={...}) as dep:
        dep.wait_until_dag_ready("tidemark_backfill")
        dep.api("POST", "/api/v2/dags/tidemark_backfill/dagRuns", {...})
        ...
    # on exit: components stopped (SIGKILL for stragglers), metadata database dropped, cluster stopped

``PostgresCluster`` / ``postgres_cluster()`` run one cluster in a temporary directory on a free
port; ``scheduler_deployment()`` creates a fresh metadata database in it, migrates it and starts the
four components; ``AirflowDeployment`` has the CLI (``cli``), REST (``api``/``http``, with a JWT
from the all-admins simple auth manager), the metadata DB (``metadata()``, read only by convention)
and the process bookkeeping (``stop``, ``leftovers``).

CeleryExecutor (tests/scheduler/test_celery_executor.py): ``redis_server()`` runs Debian's redis-server
on a free port in a temporary directory (the broker), ``celery_env()`` is the executor's configuration
and ``start_celery_worker()`` adds an ``airflow celery worker`` with a directory of its own (AIRFLOW_HOME,
task logs, TMPDIR, working directory), as if it ran on a machine of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from tidemark.model.dataset import Dataset

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
PGCTL = REPO / "embedded" / "pgctl"
COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_base_env() -> dict[str, str]:
    """The test process's environment minus anything that configures Airflow or Tidemark.

    The DAG tests' conftest sets AIRFLOW_HOME, TIDEMARK_POKE_INTERVAL=1 etc. in this very process at
    import; none of that may leak into the deployment under test.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("AIRFLOW") or k.startswith("TIDEMARK_") or k in ("PYTHONPATH", "_AIRFLOW_PARSING_CONTEXT"))
    }


def conn_uri(dsn: str) -> str:
    """The Airflow connection URI for a libpq DSN (query options are not Airflow extras)."""
    return dsn.split("?")[0]


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- PostgreSQL (embedded/pgctl)


def private_tempdir(prefix: str) -> Path:
    """A temporary directory the ``postgres`` OS user can enter.

    As root, pgctl runs the server as ``postgres``, which must reach the data dir: pytest's
    tmp_path lives under a 0700 root-owned directory, so the cluster gets a directory of its own.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@dataclass
class PostgresCluster:
    """One PostgreSQL 15 cluster driven through embedded/pgctl, as `make airflow` drives its own."""

    data: Path
    port: int

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**clean_base_env(), "TIDEMARK_PG_DATA": str(self.data), "TIDEMARK_PG_PORT": str(self.port)}
        return subprocess.run([str(PGCTL), *args], env=env, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        done = self._ctl("start")
        if done.returncode != 0:
            raise RuntimeError(f"embedded/pgctl start failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def stop(self) -> None:
        done = self._ctl("stop")
        if done.returncode != 0:
            raise RuntimeError(f"embedded/pgctl stop failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def running(self) -> bool:
        return self._ctl("status").returncode == 0

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sqlalchemy_url(self, database: str) -> str:
        """Airflow's AIRFLOW__DATABASE__SQL_ALCHEMY_CONN for a database of this cluster (psycopg2 driver)."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def postgres_cluster(root: Path | None = None) -> Iterator[PostgresCluster]:
    """A fresh cluster on a free port in a temporary directory; stopped and removed on exit."""
    base = root or private_tempdir("tidemark-pg-")
    cluster = PostgresCluster(base / "pg", free_port())
    try:
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            if root is None:
                shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- the engine under test


def _exists(conn: psycopg.Connection, regclass: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (regclass,)).fetchone()[0]


def clear_window(conn: psycopg.Connection, ds: Dataset, start: datetime, end: datetime) -> None:
    """Make a window of a dataset pristine: its chunks, ledger rows and running claims gone.

    Tests share the registered datasets of one engine (and maybe a persistent TIDEMARK_TEST_DSN
    server), so each clears the windows it loads before it starts.
    """
    for table in ds.tables:
        if _exists(conn, f"{table.schema}.{table.name}"):
            conn.execute(
                "SELECT drop_chunks(%s::regclass, older_than => %s::timestamptz, newer_than => %s::timestamptz)",
                (f"{table.schema}.{table.name}", end, start),
            )
    if _exists(conn, "tidemark.batch_ledger"):
        conn.execute(
            "DELETE FROM tidemark.batch_ledger WHERE dataset = %s AND window_start < %s AND window_end > %s",
            (ds.name, end, start),
        )
        conn.execute(
            "UPDATE tidemark.runs SET state = 'failed', finished_at = clock_timestamp()"
            " WHERE dataset = %s AND state = 'running' AND window_start < %s AND window_end > %s",
            (ds.name, end, start),
        )


# --------------------------------------------------------------------------- fault switch

# Fault injection in a long-lived deployment: the scheduler's environment (inherited by every task
# process) names one fault that fires the first 3 times it is reached (insert_batch has retries=2, so
# one batch fails for good). plugins/tidemark/faults.py counts firings in a file per fault under
# TIDEMARK_FAULT_DIR; the file starts full (disarmed) and a test that wants the fault empties it.
ARMABLE_FAULT = "insert_batch.before_commit@0x3"
_FAULT_FILE = "insert_batch.before_commit@0"


def fault_env(home: Path) -> dict[str, str]:
    """The environment that installs the (disarmed) fault switch in a deployment under ``home``."""
    folder = home / "faults"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _FAULT_FILE).write_text("xxx")
    return {"TIDEMARK_FAULT_DIR": str(folder), "TIDEMARK_FAULTS": ARMABLE_FAULT}


def arm_fault(home: Path) -> None:
    """Batch 0 of the next run that loads anything fails all three tries."""
    (home / "faults" / _FAULT_FILE).write_text("")


def fault_firings(home: Path) -> int:
    return len((home / "faults" / _FAULT_FILE).read_text())


# --------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[int, int, int, str] | None:
    """(ppid, pgid, sid, state) of a live process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    return int(rest[1]), int(rest[2]), int(rest[3]), rest[0]


def session_members(sids: Sequence[int]) -> list[int]:
    """Live (non-zombie) processes in any of the given sessions.

    A session survives what a process group does not: Airflow's task supervisor moves each task
    process into a process group of its own (setpgid), but nothing in Airflow calls setsid.
    """
    wanted = set(sids)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st and st[2] in wanted and st[3] != "Z":
            found.append(int(entry))
    return sorted(found)


def describe(pids: Sequence[int]) -> str:
    lines = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "?"
        lines.append(f"  pid {pid}: {cmd[:200]}")
    return "\n".join(lines)


@dataclass
class Component:
    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text[-lines:])


@dataclass
class AirflowDeployment:
    """One AIRFLOW_HOME and the Airflow processes started in it."""

    home: Path
    env: dict[str, str]
    api_port: int
    components: dict[str, Component] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)
    boot_seconds: float = 0.0  # start of the first wait_until_dag_ready -> DAG serialized
    _token: str | None = None

    # ---- lifecycle

    @property
    def log_dir(self) -> Path:
        return self.home / "proc-logs"

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.home,
            start_new_session=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return done

    def start(
        self, name: str, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Component:
        """Start ``airflow *args`` as component ``name``, in the home unless ``cwd`` is given."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out, err = self.log_dir / f"{name}.out", self.log_dir / f"{name}.err"
        with open(out, "ab") as o, open(err, "ab") as e:
            proc = subprocess.Popen(
                [AIRFLOW, *args],
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
                cwd=cwd or self.home,
                start_new_session=True,  # own session and process group: stoppable as a whole
            )
        comp = Component(name, proc, out, err)
        self.components[name] = comp
        return comp

    def check_alive(self) -> None:
        for comp in self.components.values():
            if comp.proc.poll() is not None:
                raise RuntimeError(f"airflow {comp.name} exited with {comp.proc.returncode}\n{self.logs_digest()}")

    def sessions(self) -> list[int]:
        return [c.pid for c in self.components.values()]

    def stop(self, grace: float = 30.0, first_signal: int = signal.SIGTERM) -> list[str]:
        """Stop every component, newest first, then SIGKILL whatever is left in their sessions.

        Newest first: the scheduler (started last) stops its executor and lets running tasks report
        to the api-server (started first), which therefore goes last. Each component gets
        ``first_signal`` to its process group (SIGINT to the leader alone for `airflow standalone`,
        which stops its children on Ctrl-C) and ``grace`` seconds to empty its session, then SIGTERM
        to its group. Returns descriptions of the processes that had to be SIGKILLed (empty on a
        clean stop).
        """
        for comp in reversed(list(self.components.values())):
            sid = comp.pid
            try:
                if first_signal == signal.SIGINT:
                    os.kill(sid, signal.SIGINT)
                else:
                    os.killpg(sid, first_signal)
            except ProcessLookupError:
                pass
            if not self._wait_empty([sid], grace) and first_signal != signal.SIGTERM:
                try:
                    os.killpg(sid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                self._wait_empty([sid], 15)
        sids = self.sessions()
        survivors = session_members(sids)
        killed = describe(survivors).splitlines() if survivors else []
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for comp in self.components.values():
            try:
                comp.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._wait_empty(sids, 10)
        return killed

    def _wait_empty(self, sids: list[int], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            for comp in self.components.values():
                comp.proc.poll()  # reap
            if not session_members(sids):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.25)

    def processes(self) -> list[int]:
        """Live processes of this deployment: in a component's session, or working in its AIRFLOW_HOME.

        Every component starts with the home as its working directory, which its children inherit;
        the session catches anything that changed directory. (Command lines cannot be relied on:
        Airflow retitles its workers and task processes with setproctitle.)
        """
        pids = set(session_members(self.sessions()))
        home = str(self.home.resolve())
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            st = _stat(int(entry))
            if st and st[3] != "Z" and (cwd == home or cwd.startswith(home + "/")):
                pids.add(int(entry))
        pids.discard(os.getpid())
        return sorted(pids)

    def leftovers(self) -> list[int]:
        """Processes of this deployment still alive after stop(): by session, working directory, and
        `pgrep -f <AIRFLOW_HOME>` (the home path in a command line)."""
        pids = set(self.processes())
        found = subprocess.run(["pgrep", "-f", str(self.home)], capture_output=True, text=True)
        pids.update(int(p) for p in found.stdout.split())
        pids.discard(os.getpid())
        return sorted(pids)

    # ---- diagnostics

    def logs_digest(self, lines: int = 80) -> str:
        parts = []
        for comp in self.components.values():
            for path in (comp.out, comp.err):
                parts.append(f"----- {path.name} (last {lines} lines) -----\n{tail(path, lines)}")
        return "\n".join(parts)

    def task_logs_digest(self, run_id: str | None = None, lines: int = 40, limit: int = 40) -> str:
        root = self.home / "logs"
        files = sorted(p for p in root.rglob("*.log") if run_id is None or run_id in str(p)) if root.exists() else []
        parts = [f"----- {p.relative_to(root)} -----\n{tail(p, lines)}" for p in files[:limit]]
        return "\n".join(parts) or "(no task logs)"

    # ---- REST

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.api_port}{path}"

    def http(self, method: str, path: str, body: Any = None, *, auth: bool = True, timeout: float = 30) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status = exc.code
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def token(self) -> str:
        """A JWT from the simple auth manager (all-admins mode: GET /auth/token needs no credentials)."""
        if self._token is None:
            status, body = self.http("GET", "/auth/token", auth=False)
            if status not in (200, 201) or not isinstance(body, dict):
                raise RuntimeError(f"GET /auth/token -> {status}: {body}")
            self._token = body["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None, expect: Sequence[int] = (200,)) -> Any:
        status, payload = self.http(method, path, body)
        if status not in expect:
            raise RuntimeError(f"{method} {path} -> {status}: {payload}")
        return payload

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                last = check()
            except (OSError, urllib.error.URLError, RuntimeError) as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(every)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})\n{self.logs_digest()}")

    def wait_until_dag_ready(self, dag_id: str, timeout: float = 240) -> float:
        """Wait for a healthy api-server and the DAG serialized without import errors; seconds taken."""
        t0 = time.monotonic()
        self.wait_for("the api-server", lambda: self.http("GET", "/api/v2/monitor/health", auth=False)[0] == 200, 180, 1)

        def ready() -> bool:
            errors = self.api("GET", "/api/v2/importErrors")
            if errors.get("total_entries"):
                raise AssertionError(f"the dag-processor reports import errors: {errors['import_errors']}")
            return self.http("GET", f"/api/v2/dags/{dag_id}")[0] == 200

        self.wait_for(f"the dag-processor to serialize {dag_id}", ready, timeout, 1)
        took = time.monotonic() - t0
        self.boot_seconds = self.boot_seconds or took
        return took

    # ---- metadata DB (read only by convention)

    def metadata(self) -> psycopg.Connection[dict[str, Any]]:
        """A connection to the metadata database; rows as dicts, timestamps timezone-aware."""
        url = self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://")
        return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def deployment_env(
    home: Path, *, dsn: str, api_port: int, metadata_url: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment of a LocalExecutor deployment on a PostgreSQL metadata DB, wired to the given engine."""
    env = clean_base_env()
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "6",  # LocalExecutor workers; enough for 4 batches + sensor + finalize
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            # The log servers of the scheduler (LocalExecutor workers) and the triggerer: free ports,
            # not 8793/8794, so deployments (and a developer's `make airflow`) can run side by side.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # One secret for every component, so JWTs minted by one validate in the others.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            # Parse the DAG folder right away and often; one parsing process is plenty for one file.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
            # Only the runs the test triggers: no scheduled run of the @daily DAG sneaking in.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_TIDEMARK_TIMESCALE": conn_uri(dsn),
            "TIDEMARK_DEMO": "on",  # the tests load the demo's `ledgers` (its DAGs: tidemark_backfill__ledgers, ...)
            "PYTHONPATH": str(REPO / "plugins"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


@contextlib.contextmanager
def scheduler_deployment(
    pg: PostgresCluster,
    engine_dsn: str,
    *,
    home: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    components: Sequence[str] = COMPONENTS,
    database: str | None = None,
) -> Iterator[AirflowDeployment]:
    """A migrated metadata database of its own in ``pg`` and the given components running on it.

    ``database`` names the (new) metadata database, for settings that must name it up front (the
    Celery result backend); a fresh random name by default.

    On exit every component is stopped (stragglers SIGKILLed; ``dep.killed`` lists them), the
    metadata database dropped and the home removed if this function made it. The caller checks
    ``dep.leftovers()`` if it wants to fail on stragglers.
    """
    own_home = home is None
    home = home or private_tempdir("tidemark-airflow-")
    home.mkdir(parents=True, exist_ok=True)
    database = database or f"airflow_{uuid.uuid4().hex[:10]}"
    port = free_port()
    dep = AirflowDeployment(
        home, deployment_env(home, dsn=engine_dsn, api_port=port, metadata_url=pg.sqlalchemy_url(database),
                             extra=extra_env), port
    )
    pg.create_database(database)
    try:
        dep.cli("db", "migrate")
        for name in components:
            args = ("api-server", "--port", str(port), "--host", "127.0.0.1") if name == "api-server" else (name,)
            dep.start(name, *args)
        yield dep
    finally:
        try:
            dep.killed = dep.stop()
        finally:
            pg.drop_database(database)
            if own_home:
                shutil.rmtree(home, ignore_errors=True)


# --------------------------------------------------------------------------- CeleryExecutor: Redis and workers

REDIS_SERVER = "/usr/bin/redis-server"  # Debian's redis-server (`make setup` installs it)


@dataclass
class RedisServer:
    """One redis-server process (the Celery broker) on 127.0.0.1, nothing persisted, data dir ``dir``."""

    dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.dir / "redis-server.log"

    def start(self, timeout: float = 30) -> None:
        if not os.access(REDIS_SERVER, os.X_OK):
            raise RuntimeError(f"{REDIS_SERVER} is missing: `make setup` installs Debian's redis-server")
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.dir)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} on port {self.port}:\n{tail(self.log)}")
            if self.ping():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} within {timeout:.0f} s:\n{tail(self.log)}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def redis_server(root: Path | None = None) -> Iterator[RedisServer]:
    """A fresh redis-server on a free port in a temporary directory; stopped (and the directory removed) on exit.

    A server that does not come up raises: the caller's test fails, it is never skipped.
    """
    base = root or Path(tempfile.mkdtemp(prefix="tidemark-redis-"))
    server = RedisServer(base, free_port())
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            if root is None:
                shutil.rmtree(base, ignore_errors=True)


def celery_env(broker_url: str, result_backend: str) -> dict[str, str]:
    """The CeleryExecutor settings of every component and worker (extra_env of scheduler_deployment)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        # Celery's result_extended: the result backend (celery_taskmeta) also records which worker ran each
        # Celery task; task_instance.external_executor_id is that Celery task's id.
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"result_extended": True}),
        # Publishing a task to the broker may take more than the default 1 s on a busy 2-core machine.
        "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
    }


def start_celery_worker(dep: AirflowDeployment, name: str, machine: Path, concurrency: int = 2) -> Component:
    """``airflow celery worker`` named ``name@<host>``, on a "machine" of its own: an AIRFLOW_HOME (so its
    task logs), TMPDIR and working directory under ``machine``, shared with no other process.

    Put ``machine`` under ``dep.home``: teardown finds the worker by session, ``leftovers()`` also by
    working directory. No log server (--skip-serve-logs): nothing reads task logs over HTTP here.
    """
    home, tmp, cwd = machine / "airflow-home", machine / "tmp", machine / "cwd"
    for d in (home, tmp, cwd):
        d.mkdir(parents=True, exist_ok=True)
    env = {"AIRFLOW_HOME": str(home), "TMPDIR": str(tmp)}
    return dep.start(name, "celery", "worker", "--concurrency", str(concurrency), "--celery-hostname", f"{name}@%h",
                     "--skip-serve-logs", env=env, cwd=cwd)
