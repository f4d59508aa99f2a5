"""The Tidemark tab in a real browser on a real Airflow: log in, trigger a backfill, watch it reach 100 %.

Airflow (api-server, dag-processor, scheduler, triggerer on a PostgreSQL metadata DB, LocalExecutor) runs on free ports against an
embedded engine of the test's own, with the SimpleAuthManager asking for a password; Debian's
chromium is driven by playwright-core (``tidemark_tab.mjs``). The page's numbers must equal what
``tidemark.runs`` recorded. The screenshot goes to the test's tmp dir, and to
``docs/tidemark_tab.png`` with ``TIDEMARK_UPDATE_SCREENSHOT=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tidemark.connection import connect

from tests.conftest import EmbeddedEngine
from tests.scheduler.harness import AirflowDeployment, describe, postgres_cluster, scheduler_deployment

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHROMIUM = os.environ.get("TIDEMARK_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "tidemark-browser-test"
CONF = {"dataset": "ledgers", "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-03T00:00:00+00:00",
        "batch_interval": "3 hours"}


def _requirements() -> None:
    """Installed by `make setup`; a missing piece fails the test with the command that installs it."""
    problems = []
    if not Path(CHROMIUM).exists():
        problems.append(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        problems.append("tests/browser/node_modules is missing (cd tests/browser && npm ci)")
    if shutil.which("node") is None:
        problems.append("node is not on PATH")
    assert not problems, "; ".join(problems) + " - `make setup` installs them"


@pytest.fixture
def airflow(private_engine: EmbeddedEngine, tmp_path: Path) -> Iterator[AirflowDeployment]:
    """The project's real deployment (PostgreSQL metadata DB; api-server, dag-processor, scheduler, triggerer)."""
    private_engine.start()
    home = tmp_path / "airflow-home"
    home.mkdir()
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": PASSWORD}))
    extra = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",  # a real login, as a user has
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "TIDEMARK_POKE_INTERVAL": "10",  # >= 10 s under a real scheduler (apache/airflow#71172)
        "TIDEMARK_RETRY_DELAY": "2",
        "TIDEMARK_DIRECT_COMPRESS": "off",  # classic COPY: the page's compression ratio is checked below
    }
    with postgres_cluster() as pg, scheduler_deployment(pg, private_engine.dsn, home=home, extra_env=extra) as dep:
        try:
            dep.wait_for("the api-server", lambda: dep.http("GET", "/api/v2/monitor/health", auth=False)[0] == 200,
                         timeout=90)
            status, body = dep.http("POST", "/auth/token", {"username": "admin", "password": PASSWORD}, auth=False)
            assert status in (200, 201), body
            dep._token = body["access_token"]
            yield dep
        except BaseException:
            print(f"\n===== Airflow process logs ({home}) =====\n{dep.logs_digest()}")
            raise
    left = dep.leftovers()
    assert not left, f"Airflow processes left running:\n{describe(left)}"


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_tidemark_tab_follows_a_backfill_to_100_percent(
    airflow: AirflowDeployment, private_engine: EmbeddedEngine, tmp_path: Path
) -> None:
    _requirements()
    t0 = time.monotonic()
    airflow.wait_for("tidemark_backfill to be parsed",
                     lambda: airflow.http("GET", "/api/v2/dags/tidemark_backfill")[0] == 200, timeout=120, every=2)
    airflow.api("PATCH", "/api/v2/dags/tidemark_backfill", {"is_paused": False})
    # Airflow does not protect plugin endpoints by itself: these answers come from the plugin's auth.
    assert _status(airflow.url("/tidemark/api/runs")) == 401
    assert _status(airflow.url("/tidemark/run?dag_id=tidemark_backfill&run_id=x")) == 401
    assert _status(airflow.url("/tidemark/api/runs"), {"Authorization": f"Bearer {airflow.token()}"}) == 200

    run_id = "browser__tidemark_tab"
    shot = tmp_path / "tidemark_tab.png"
    env = {**os.environ, "AIRFLOW_URL": airflow.url(""), "AIRFLOW_USER": "admin", "AIRFLOW_PASSWORD": PASSWORD,
           "RUN_ID": run_id, "RUN_CONF": json.dumps(CONF), "SCREENSHOT": str(shot), "CHROMIUM": CHROMIUM,
           "RUN_TIMEOUT_MS": "150000"}
    done = subprocess.run(["node", str(HERE / "tidemark_tab.mjs")], cwd=HERE, env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{airflow.task_logs_digest(run_id)}"
    page = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n[browser] run watched in {time.monotonic() - t0:.1f} s; page: "
          f"{ {k: v for k, v in page.items() if k != 'observed'} }\n[browser] progress seen: "
          f"{[(o['percent'], o['refresh']) for o in page['observed']]}")

    with connect(private_engine.dsn) as conn:
        row = conn.execute(
            "SELECT state, planned_batches, watermark_batches, peak_backlog_chunks, report FROM tidemark.runs"
            " WHERE run_id = %s", (f"tidemark_backfill/{run_id}",),
        ).fetchone()
        pokes = conn.execute("SELECT count(*) FROM tidemark.poke_history WHERE run_id = %s",
                             (f"tidemark_backfill/{run_id}",)).fetchone()[0]
    assert row is not None
    state, planned, watermark, peak, report = row
    assert page["percent"] == 100 and page["percentText"] == "100 %"
    assert page["run-state"] == state == "succeeded"
    assert int(page["planned-batches"]) == planned == 16
    assert int(page["loaded-batches"]) == planned and int(page["watermark-batches"]) == watermark == planned
    assert int(page["beyond-watermark"]) == 0
    assert int(page["rows-loaded"]) == report["rows_loaded_total"] == int(page["report-rows"])
    assert float(page["report-ratio"]) == report["bytes"]["ratio"]
    assert int(page["report-chunks"]) == report["chunks"]["compressed"]
    assert int(page["peak-backlog"]) == peak
    assert page["plotPoints"] == 1 + 2 * pokes > 1  # run start, then before and after each poke's compression
    assert page["observed"][-1]["refresh"] == "off"  # stopped refreshing once the run ended
    assert page["navLink"].endswith(f"/dags/tidemark_backfill/runs/{run_id}/plugin/tidemark")
    assert shot.stat().st_size > 10_000
    if os.environ.get("TIDEMARK_UPDATE_SCREENSHOT"):
        shutil.copy(shot, REPO / "docs" / "tidemark_tab.png")
