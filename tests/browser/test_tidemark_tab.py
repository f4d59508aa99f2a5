"""The Tidemark tab in a real browser on a real Airflow: log in, trigger a backfill, watch a batch fail, resume, 100 %.

Airflow (api-server, dag-processor, scheduler, triggerer on a PostgreSQL metadata DB, LocalExecutor) runs on free ports against an
embedded engine of the test's own, with the SimpleAuthManager asking for a password; Debian's
chromium is driven by playwright-core (``tidemark_tab.mjs``). The run is in the default write mode (direct-to-columnstore
COPY) and one of its batches fails on its first try (``TIDEMARK_FAULTS``): while the run goes on, the tab's status strip
must show that batch failed with its error and a log link that opens Airflow's log of that try; after the run, the
test clears the failed task instances (the tab's resume instruction) and the tab follows the run to its report, whose
storage figures must be non-zero and equal what ``tidemark.runs`` recorded. The screenshot goes to the test's tmp
dir, and to ``docs/tidemark_tab.png`` with ``TIDEMARK_UPDATE_SCREENSHOT=1``.
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
FAILING_BATCH = 2
ERROR_TEXT = f"injected fault insert_batch.before_commit@{FAILING_BATCH}"


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
        "TIDEMARK_RETRIES": "0",  # the failing batch fails for good at once; the test resumes the run
        # The default write mode (direct-to-columnstore COPY); batch 2 fails once, and batch 15 holds still for a while
        # after its commit so the run is surely still going when the failure shows.
        "TIDEMARK_FAULTS": f"insert_batch.before_commit@{FAILING_BATCH}x1,insert_batch.pause_after_commit@15x1",
        "TIDEMARK_FAULT_DIR": str(tmp_path / "faults"),
        "TIDEMARK_FAULT_PAUSE": "15",
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
    key = f"tidemark_backfill/{run_id}"
    shot = tmp_path / "tidemark_tab.png"
    env = {**os.environ, "AIRFLOW_URL": airflow.url(""), "AIRFLOW_USER": "admin", "AIRFLOW_PASSWORD": PASSWORD,
           "RUN_ID": run_id, "RUN_CONF": json.dumps(CONF), "SCREENSHOT": str(shot), "CHROMIUM": CHROMIUM,
           "FAILING_BATCH": str(FAILING_BATCH), "ERROR_TEXT": ERROR_TEXT, "RUN_TIMEOUT_MS": "300000"}
    done = subprocess.run(["node", str(HERE / "tidemark_tab.mjs")], cwd=HERE, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{airflow.task_logs_digest(run_id)}"
    page = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n[browser] run watched in {time.monotonic() - t0:.1f} s; page: "
          f"{ {k: v for k, v in page.items() if k != 'observed'} }\n[browser] progress seen: "
          f"{[(o['phase'], o['percent'], o['refresh'], o['cells']) for o in page['observed']]}")

    # While the run went on, the strip showed the failed batch with its error's first line and a working log link.
    seen = page["failureSeen"]
    assert seen is not None, "the strip never showed the failed batch while the run was going on"
    assert seen["airflowRunning"] and seen["runState"] == "running" and seen["status"] == "failed"
    assert seen["error"].startswith("InjectedFault: " + ERROR_TEXT) and ERROR_TEXT in seen["cellTitle"]
    assert "waiting" in seen["otherCells"] or "running" in seen["otherCells"] or "loaded" in seen["otherCells"]
    assert seen["logHref"] == f"/dags/tidemark_backfill/runs/{run_id}/tasks/insert_batch/mapped/{FAILING_BATCH}?try_number=1"
    assert page["logPage"]["showsError"], page["logPage"]
    assert page["firstState"] == "failed" and f'"dag_run_id": "{run_id}"' in page["resume"]
    assert f"(batches {FAILING_BATCH})" in page["resume"]

    with connect(private_engine.dsn) as conn:
        row = conn.execute(
            "SELECT state, planned_batches, watermark_batches, peak_backlog_chunks, report, attempt FROM tidemark.runs"
            " WHERE run_id = %s", (key,),
        ).fetchone()
        observations = conn.execute("SELECT count(*), count(stored_bytes) FROM tidemark.poke_history WHERE run_id = %s",
                                    (key,)).fetchone()
        failures = conn.execute("SELECT batch_index, try_number, error FROM tidemark.batch_failures WHERE run_id = %s",
                                (key,)).fetchall()
        stored_now = conn.execute(
            "SELECT sum(pg_total_relation_size(format('%%I.%%I', chunk_schema, chunk_name)::regclass)"
            " + coalesce((SELECT pg_total_relation_size(format('%%I.%%I', cc.schema_name, cc.table_name)::regclass)"
            "   FROM _timescaledb_catalog.chunk ch JOIN _timescaledb_catalog.chunk cc ON cc.id = ch.compressed_chunk_id"
            "   WHERE ch.schema_name = c.chunk_schema AND ch.table_name = c.chunk_name), 0))"
            " FROM timescaledb_information.chunks c WHERE hypertable_schema = 'public'"
            " AND hypertable_name IN ('ledgers', 'operations', 'transactions')"
            " AND range_end > %s AND range_start < %s", (CONF["start"], CONF["end"])).fetchone()[0]
    assert row is not None
    state, planned, watermark, peak, report, attempt = row
    assert [(i, t) for i, t, _ in failures] == [(FAILING_BATCH, 1)] and failures[0][2] == seen["error"]
    assert page["percent"] == 100 and page["percentText"] == "100 %"
    assert page["run-state"] == state == "succeeded" and attempt == 1  # resumed: the same attempt
    assert int(page["planned-batches"]) == planned == 16
    assert int(page["loaded-batches"]) == planned and int(page["watermark-batches"]) == watermark == planned
    assert int(page["beyond-watermark"]) == 0 and page["cells"] == ["loaded"] * planned
    assert int(page["rows-loaded"]) == report["rows_loaded_total"] == int(page["report-rows"])
    # Direct mode's story: what was written, what it stands for, how compact; non-zero and the database's own.
    size = report["bytes"]
    assert report["write_mode"].startswith("direct")
    assert int(page["report-stored"]) == size["stored"] == stored_now > 0
    assert int(page["report-uncompressed"]) == size["uncompressed"] > size["stored"]
    assert float(page["report-ratio"]) == size["storage_ratio"] > 1.5
    # 3-hour batches share 6-hour chunks: direct COPY cannot promise them sorted, so they are written unordered
    # and recompressed inside the run (TimescaleDB's policy would recompress them later otherwise).
    assert int(page["report-written-compressed"]) == report["chunks"]["written_compressed"]
    assert int(page["report-compressed-afterwards"]) == report["chunks"]["compressed_afterwards"]
    assert report["chunks"]["written_compressed"] + report["chunks"]["compressed_afterwards"] == 24
    assert int(page["report-chunks"]) == report["chunks"]["compressed"] == 24
    assert int(page["stored-now"]) > 0
    # The plot: rows and bytes stored over time against the watermark, no flat zero backlog line.
    assert page["storedPoints"] == 1 + observations[1] > 2 and page["rowsPoints"] == 1 + observations[0]
    assert page["backlogLine"] == 0 and peak == 0
    assert page["refreshText"] == "run ended: not refreshing"
    assert page["labelColors"]["color"] == "rgb(26, 27, 30)"
    assert page["observed"][-1]["refresh"] == "off"  # stopped refreshing once the run ended
    assert page["navLink"].endswith(f"/dags/tidemark_backfill/runs/{run_id}/plugin/tidemark")
    assert page["navFailedRows"] == 0  # filtered by state: the (succeeded) run is not among the failed ones
    assert shot.stat().st_size > 10_000
    if os.environ.get("TIDEMARK_UPDATE_SCREENSHOT"):
        shutil.copy(shot, REPO / "docs" / "tidemark_tab.png")
