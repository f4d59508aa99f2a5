"""A real Airflow deployment for tests: scheduler, dag-processor and api-server as separate processes.

Each component runs in a session (and process group) of its own, with stdout/stderr in files under
the test's AIRFLOW_HOME, so a test can stop the whole tree for certain and show the logs when it
fails. Nothing here touches a developer's Airflow installation: the environment is built from
scratch (every inherited ``AIRFLOW*`` / ``TIDEMARK_*`` variable is dropped first).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")


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

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Component:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out, err = self.log_dir / f"{name}.out", self.log_dir / f"{name}.err"
        with open(out, "ab") as o, open(err, "ab") as e:
            proc = subprocess.Popen(
                [AIRFLOW, *args],
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
                cwd=self.home,
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

    # ---- metadata DB (read only)

    def metadata(self) -> sqlite3.Connection:
        db = sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=30)
        db.row_factory = sqlite3.Row
        return db


def deployment_env(home: Path, *, dsn: str, api_port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a LocalExecutor deployment on SQLite, wired to the given database."""
    env = clean_base_env()
    env.update(
        {
            "AIRFLOW_HOME": str(home),
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
            "PYTHONPATH": str(REPO / "plugins"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env
