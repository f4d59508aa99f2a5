"""tidemark_backfill under a real Airflow deployment: api-server, dag-processor, scheduler and triggerer
processes on a PostgreSQL metadata DB.

`dag.test()` (tests/dags) runs tasks one at a time in-process; only a real scheduler with the
LocalExecutor shows that batches really load side by side while the reschedule-mode sensor compresses
behind them, that the tasks reach the engine through the Airflow connection from the environment,
and that the DAG survives being parsed by the dag-processor. Also checks that `make airflow`'s
recipe (`airflow standalone` on PostgreSQL, AIRFLOW_PORT) comes up and its tasks reach the API.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import (
    REPO,
    AirflowDeployment,
    Component,
    PostgresCluster,
    clean_base_env,
    clear_window,
    conn_uri,
    describe,
    free_port,
    parse_time,
    tail,
)
from tidemark.timescale import compressor
from tidemark.declare import catalog
from tidemark.connection import connect
from tidemark.flows.report import format_report
from tidemark.demo.stream import LedgerSource

from tests.conftest import NO_DUPLICATES, duplicate_keys, rows_in

pytestmark = pytest.mark.slow

DAG_ID = "tidemark_backfill"
# The registered `ledgers` dataset (schema public): a separate scheduler process cannot see a dataset
# registered at run time. The other tests on the session's deployment load other days of it.
START = datetime(2023, 3, 1, tzinfo=UTC)
END = START + timedelta(days=1)
STEP = "3 hours"  # 8 batches (two rounds of 4 in parallel); 6-hour chunks -> 4 per hypertable, 12 in all
BATCHES = 8
CHUNKS = 12
RUN_TIMEOUT = 480.0  # the run itself takes ~30-60 s on the 2-core dev machine
RACE_71172 = re.compile(r"finished with state \w+, but the task instance's state attribute is")


# --------------------------------------------------------------------------- Airflow helpers


def task_instances(dep: AirflowDeployment, run_id: str) -> list[dict[str, Any]]:
    body = dep.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=1000")
    return body["task_instances"]


def reschedules(dep: AirflowDeployment, run_id: str, task_id: str) -> list[dict[str, Any]]:
    """Every reschedule (one per poke that was not done) of a task in the run, over all its tries."""
    with dep.metadata() as db:
        rows = db.execute(
            """
            SELECT ti.map_index, tr.start_date AS start, tr.end_date AS "end", tr.reschedule_date AS next
            FROM task_reschedule tr
            JOIN (SELECT id, map_index FROM task_instance WHERE dag_id = %(dag)s AND run_id = %(run)s AND task_id = %(task)s
                  UNION SELECT task_instance_id, map_index FROM task_instance_history
                        WHERE dag_id = %(dag)s AND run_id = %(run)s AND task_id = %(task)s) ti ON ti.id = tr.ti_id
            ORDER BY tr.end_date
            """,
            {"dag": DAG_ID, "run": run_id, "task": task_id},
        ).fetchall()
    return list(rows)


_DEFERRED_LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)(?:Z|\+00:00)?.*waiting in the triggerer")


def sensor_deferrals(dep: AirflowDeployment, run_id: str) -> list[datetime]:
    """When the sensor deferred to its trigger (from its task logs)."""
    root = dep.home / "logs"
    found: list[datetime] = []
    for path in root.rglob("*.log") if root.exists() else []:
        if run_id in str(path) and "progressive_compress" in str(path):
            for m in _DEFERRED_LINE.finditer(path.read_text(errors="replace")):
                found.append(datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC))
    return sorted(found)


def earlier_tries(dep: AirflowDeployment, run_id: str) -> list[dict[str, Any]]:
    with dep.metadata() as db:
        return db.execute(
            "SELECT task_id, map_index, try_number, state, start_date, end_date FROM task_instance_history"
            " WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index, try_number",
            (DAG_ID, run_id),
        ).fetchall()


def state_mismatches(dep: AirflowDeployment, run_id: str) -> list[dict[str, Any]]:
    """The scheduler's audit-log rows for an executor report it did not expect (apache/airflow#71172's symptom)."""
    with dep.metadata() as db:
        return db.execute(
            "SELECT dttm, task_id, map_index, try_number, extra FROM log"
            " WHERE event = 'state mismatch' AND dag_id = %s AND run_id = %s ORDER BY dttm",
            (DAG_ID, run_id),
        ).fetchall()


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> tuple[int, datetime | None]:
    """Most intervals open at one instant (half-open: an end at t closes before a start at t)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    best, at, now = 0, None, 0
    for t, d in events:
        now += d
        if now > best:
            best, at = now, t
    return best, at


def overlapping_pairs(intervals: list[tuple[int, datetime, datetime]]) -> list[tuple[int, int]]:
    return [
        (a[0], b[0])
        for i, a in enumerate(intervals)
        for b in intervals[i + 1 :]
        if a[1] < b[2] and b[1] < a[2]
    ]


# --------------------------------------------------------------------------- the tests


def test_backfill_under_the_real_scheduler_is_concurrent_exact_and_compressed(
    deployment: AirflowDeployment, unpaused: datetime, dsn: str
) -> None:
    dep = deployment
    ds = catalog.get("ledgers")
    with connect(dsn) as conn:
        clear_window(conn, ds, START, END)
    boot_seconds = dep.boot_seconds

    run_id = f"scheduler_e2e__{uuid.uuid4().hex[:8]}"
    conf = {"dataset": ds.name, "start": START.isoformat(), "end": END.isoformat(), "batch_interval": STEP}
    t0 = time.monotonic()
    dep.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf},
            expect=(200, 201))

    def explain(msg: str) -> str:
        return (f"{msg}\n===== task logs =====\n{dep.task_logs_digest(run_id)}\n"
                f"===== component logs =====\n{dep.logs_digest()}")

    # Poll the run; sample how many batches are running at once along the way.
    sampled_running = 0
    max_processes = 0
    state = None
    deadline = t0 + RUN_TIMEOUT
    while time.monotonic() < deadline:
        dep.check_alive()
        state = dep.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            break
        try:
            tis = task_instances(dep, run_id)
        except RuntimeError:
            tis = []
        running = sum(1 for t in tis if t["task_id"] == "insert_batch" and t["state"] == "running")
        sampled_running = max(sampled_running, running)
        max_processes = max(max_processes, len(dep.processes()))
        time.sleep(2)
    wall = time.monotonic() - t0
    if state != "success":
        tis = task_instances(dep, run_id)
        summary = "\n".join(f"  {t['task_id']}[{t['map_index']}] {t['state']} try {t['try_number']}" for t in tis)
        pytest.fail(explain(f"run {run_id} ended {state!r} after {wall:.0f} s (timeout {RUN_TIMEOUT:.0f} s):\n{summary}"))

    run = dep.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
    tis = task_instances(dep, run_id)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for t in tis:
        by_task.setdefault(t["task_id"], []).append(t)
    inserts = sorted(by_task["insert_batch"], key=lambda t: t["map_index"])
    assert [t["map_index"] for t in inserts] == list(range(BATCHES)), explain("unexpected insert_batch expansion")
    assert all(t["state"] == "success" for t in tis), explain(f"not every task succeeded: {[(t['task_id'], t['map_index'], t['state']) for t in tis]}")

    # ---- the data: exact, no duplicates, every chunk of the window compressed
    expected = LedgerSource().expected_counts(START, END)
    with connect(dsn) as conn:
        assert rows_in(conn, ds, START, END) == expected
        assert duplicate_keys(conn, ds) == NO_DUPLICATES
        chunks = compressor.list_chunks(conn, ds, START, END)
        assert len(chunks) == CHUNKS and all(c.is_compressed for c in chunks), [(c.name, c.is_compressed) for c in chunks]
        tm_run = f"{DAG_ID}/{run_id}"
        report_row = conn.execute("SELECT state, report FROM tidemark.runs WHERE run_id = %s", (tm_run,)).fetchone()
        progressive = conn.execute(
            "SELECT min(compressed_at), count(*) FROM tidemark.compression_log WHERE run_id = %s AND phase = 'progressive'",
            (tm_run,),
        ).fetchone()
    assert report_row and report_row[0] == "succeeded", report_row
    report = report_row[1]
    assert report["rows_in_window"] == expected and report["batches"]["loaded"] == BATCHES

    # ---- true concurrency: batch task instances overlapped in time while the sensor was poking
    intervals = [(t["map_index"], parse_time(t["start_date"]), parse_time(t["end_date"])) for t in inserts]
    assert all(s and e for _, s, e in intervals), intervals
    peak, peak_at = max_overlap([(s, e) for _, s, e in intervals])
    pairs = overlapping_pairs(intervals)
    first_insert_start = min(s for _, s, _ in intervals)
    last_insert_end = max(e for _, _, e in intervals)
    sensor = by_task["progressive_compress"][0]
    pokes = reschedules(dep, run_id, "progressive_compress")
    pokes_during_load = [p for p in pokes if first_insert_start < p["end"] < last_insert_end]
    waits = reschedules(dep, run_id, "insert_batch")
    first_compression = progressive[0]

    assert peak >= 2 and pairs, explain(f"insert_batch task instances never overlapped: {intervals}")
    # The sensor pokes, then waits in the triggerer (tidemark.airflow.sensors; TIDEMARK_SENSOR_DEFERRABLE=false: it
    # reschedules instead): either way it must have looked while the batches were still loading.
    deferred = sensor_deferrals(dep, run_id)
    looked = [p["end"] for p in pokes] + deferred
    assert looked and min(looked) < last_insert_end, explain(f"no sensor poke before the last batch ended: {pokes}, {deferred}")
    # ... and it was still there, poking or waiting in the triggerer, while they loaded: its first look may come
    # just before the first batch's process is up (the deferrable sensor defers at its first poke), but it
    # must not finish before the last batch has.
    sensor_end = parse_time(sensor["end_date"])
    assert pokes_during_load or (deferred and sensor_end and sensor_end >= last_insert_end), explain(
        f"the sensor was not watching while batches were loading: looked at {sorted(looked)}, ended {sensor_end},"
        f" batches {first_insert_start} -> {last_insert_end}")
    assert first_compression is not None and first_compression < last_insert_end, (
        f"no chunk was compressed before the last batch ended ({first_compression} vs {last_insert_end})"
    )

    # ---- apache/airflow#71172: a reschedule-mode poke marked failed must have been absorbed by a retry
    tries = earlier_tries(dep, run_id)
    failed_tries = [t for t in tries if t["state"] != "success"]
    mismatches = state_mismatches(dep, run_id)
    race_lines = [f"{m['task_id']}[{m['map_index']}] try {m['try_number']} at {m['dttm']}: {m['extra']}" for m in mismatches]
    # The deployment is shared with the CLI rerun tests: only this run's lines count.
    race_lines += [ln for c in dep.components.values() for ln in tail(c.out, 100000).splitlines()
                   + tail(c.err, 100000).splitlines() if RACE_71172.search(ln) and run_id in ln]
    retried = [(t["task_id"], t["map_index"], t["try_number"]) for t in tis if t["try_number"] > 1]

    dr_start, dr_end = parse_time(run["start_date"]), parse_time(run["end_date"])
    lines = [
        "",
        "=" * 100,
        f"REAL SCHEDULER E2E  run {run_id}: {ds.name} [{START.isoformat()}, {END.isoformat()}) in batches of {STEP}",
        f"  Airflow up (api-server healthy + DAG serialized): {boot_seconds:.1f} s",
        f"  wall time trigger -> run success (test clock): {wall:.1f} s;"
        f" DagRun start -> end: {(dr_end - dr_start).total_seconds():.1f} s",
        f"  batches: {len(inserts)} task instances, first start -> last end"
        f" {(last_insert_end - first_insert_start).total_seconds():.1f} s;"
        f" rows {report['rows_loaded_total']:,} ({report.get('rows_per_second') or '?'} rows/s)",
        f"  insert concurrency: max {peak} insert_batch TIs running at once (at {peak_at.isoformat()}),"
        f" {len(pairs)} overlapping pairs; max seen by REST sampling every ~2 s: {sampled_running}",
        f"  Airflow processes tracked for teardown: up to {max_processes} at once (components, executor workers,"
        " task supervisors and task processes)",
        f"  backpressure waits (insert_batch reschedules): {len(waits)}",
        f"  sensor: try {sensor['try_number']}, {len(pokes)} pokes rescheduled, {len(pokes_during_load)} of them while"
        f" batches were loading; deferred to the triggerer at {[t.isoformat() for t in deferred]}; first look at"
        f" {min(looked).isoformat()}, last batch ended {last_insert_end.isoformat()}",
        f"  compression: first progressive compress_chunk at {first_compression.isoformat()}"
        f" ({progressive[1]} progressive), report: {report['chunks']}",
        f"  apache/airflow#71172: {len(mismatches)} 'state mismatch' audit-log row(s); tries > 1: {retried or 'none'};"
        f" earlier failed tries: {[(t['task_id'], t['map_index'], t['try_number'], t['state']) for t in failed_tries] or 'none'}",
        *[f"    {ln.strip()[:300]}" for ln in race_lines[:5]],
        "  per batch (map index: start -> end, try):",
        *[f"    {t['map_index']:2d}: {t['start_date']} -> {t['end_date']} try {t['try_number']}" for t in inserts],
        format_report(report),
        "=" * 100,
    ]
    print("\n".join(lines))

    if race_lines or failed_tries:
        # Whatever hit the race (sensor or a rescheduling batch) was retried and the run still succeeded.
        assert all(t["state"] == "success" for t in tis)
        assert retried, "a try failed but no task instance shows a retry"


MAKE = ["make", "-n", "--no-print-directory"]


def _makefile_airflow_recipe(make_vars: dict[str, str], base: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """`make -n airflow`'s last command, split into its environment assignments and its argv.

    ``$VAR`` in an assigned value (e.g. ``PATH=...:$PATH``) is expanded against ``base``, as the
    shell running the recipe would.
    """
    args = [*MAKE, "airflow", *(f"{k}={v}" for k, v in make_vars.items())]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    last = [ln for ln in done.stdout.splitlines() if ln.strip()][-1]
    tokens = shlex.split(last)
    env: dict[str, str] = {}

    def expand(m: re.Match[str]) -> str:
        return {**base, **env}.get(m.group(1) or m.group(2), "")

    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        env[key] = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", expand, value)
    return env, tokens


def test_make_airflow_recipe_starts_standalone_on_postgres_and_tasks_follow_the_port(
    airflow_home: Path, dsn: str, engine: Any, pg: PostgresCluster
) -> None:
    base = clean_base_env()
    # As on a fresh clone: no activated venv, no other Airflow on PATH (the verdict must not depend
    # on the shell the tests run from).
    base["PATH"] = os.pathsep.join(
        d for d in base.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "airflow").exists()
    )
    port = free_port()
    make_vars = {"AIRFLOW_PORT": str(port), "TIDEMARK_PG_DATA": str(pg.data), "TIDEMARK_PG_PORT": str(pg.port)}
    if engine:
        make_vars["TIDEMARK_DB_PORT"] = str(engine.port)
    recipe_env, argv = _makefile_airflow_recipe(make_vars, base)
    assert argv[-1] == "standalone" and argv[0].endswith("bin/airflow"), argv
    airflow_bin = argv[0] if Path(argv[0]).is_absolute() else str(REPO / argv[0])
    # `airflow standalone` starts scheduler, dag-processor, triggerer and api-server as a bare
    # `airflow` looked up on PATH (airflow/cli/commands/standalone_command.py, SubCommand.run), so
    # the recipe must put the venv's bin first on PATH, or the components fail to start (or are
    # another installation's Airflow) while standalone itself keeps running.
    on_path = shutil.which("airflow", path={**base, **recipe_env}.get("PATH", ""))
    assert on_path and Path(on_path).samefile(airflow_bin), (
        f"`make airflow` runs {argv[0]} standalone, but `airflow` on the recipe's PATH is {on_path!r}: standalone "
        "spawns its components as `airflow` from PATH. Fix the Makefile's airflow target: "
        'PATH="$(CURDIR)/$(VENV)/bin:$$PATH" before $(VENV)/bin/airflow standalone'
    )
    assert recipe_env.get("AIRFLOW__CORE__EXECUTOR") == "LocalExecutor"
    assert recipe_env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags")
    assert recipe_env["PYTHONPATH"] == str(REPO / "plugins")
    # The metadata DB is PostgreSQL (the `airflow` database of embedded/pgctl's cluster), and the
    # UI/API port and the execution API the task processes call move together.
    assert recipe_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == pg.sqlalchemy_url("airflow")
    assert recipe_env["AIRFLOW__API__PORT"] == str(port)
    assert recipe_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://127.0.0.1:{port}/execution/"
    # The README's `eval "$(make -s airflow-env)"` gives a CLI shell the very same settings.
    exported = subprocess.run(["make", "-s", "--no-print-directory", "airflow-env", *(f"{k}={v}" for k, v in make_vars.items())],
                              cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    cli_env = dict(ln.removeprefix("export ").split("=", 1) for ln in exported.splitlines() if ln.startswith("export "))
    assert {k: v for k, v in cli_env.items() if k != "PATH"} == {k: v for k, v in recipe_env.items() if k != "PATH"}
    if engine:
        assert recipe_env["AIRFLOW_CONN_TIDEMARK_TIMESCALE"] == conn_uri(dsn)
    else:
        recipe_env["AIRFLOW_CONN_TIDEMARK_TIMESCALE"] = conn_uri(dsn)

    # Only what must differ from `make airflow`: a private home and metadata database, free log-server
    # ports, and no scheduled runs (unpausing would start one over the window the session
    # deployment's test loads).
    database = f"standalone_{uuid.uuid4().hex[:8]}"
    pg.create_database(database)
    env = {**base, **recipe_env, "AIRFLOW_HOME": str(airflow_home), "PYTHONUNBUFFERED": "1",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.sqlalchemy_url(database),
           "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
    dep = AirflowDeployment(airflow_home, env, port)
    try:
        subprocess.run([airflow_bin, "db", "migrate"], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=300, check=True)  # `.tidemark/pg.airflow-migrated`
        t0 = time.monotonic()
        dep.log_dir.mkdir(parents=True, exist_ok=True)
        out, err = dep.log_dir / "standalone.out", dep.log_dir / "standalone.err"
        with open(out, "ab") as o, open(err, "ab") as e:
            proc = subprocess.Popen([airflow_bin, *argv[1:]], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                                    stdout=o, stderr=e, start_new_session=True)
        dep.components["standalone"] = Component("standalone", proc, out, err)
        dep.wait_for("standalone's /api/v2/monitor/health",
                     lambda: dep.http("GET", "/api/v2/monitor/health", auth=False)[0] == 200, timeout=180, every=1)  # 90 s was short at load 12 on 2 cores
        healthy = time.monotonic() - t0
        health = dep.http("GET", "/api/v2/monitor/health", auth=False)[1]

        # A busy AIRFLOW_PORT is refused before anything starts, with a message naming the way out.
        busy = subprocess.run(["make", "--no-print-directory", "airflow", *(f"{k}={v}" for k, v in make_vars.items())],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert busy.returncode != 0 and f"port {port} on 127.0.0.1 is already in use" in busy.stderr, busy
        assert "AIRFLOW_PORT=" in busy.stderr and "airflow standalone" not in busy.stdout, busy

        # The README: the admin password is in simple_auth_manager_passwords.json.generated.
        pw_file = airflow_home / "simple_auth_manager_passwords.json.generated"
        dep.wait_for("the generated admin password file", pw_file.exists, timeout=30)
        password = json.loads(pw_file.read_text())["admin"]
        assert f"Password for user 'admin': {password}" in out.read_text(errors="replace")  # "printed by Airflow"
        status, body = dep.http("POST", "/auth/token", {"username": "admin", "password": password}, auth=False)
        assert status in (200, 201), body
        dep._token = body["access_token"]
        dep.wait_until_dag_ready("tidemark_backfill", timeout=180)
        dag_up = time.monotonic() - t0

        # A dry run's tasks reach the execution API on the configured port (not 8080), or they fail.
        dep.api("PATCH", "/api/v2/dags/tidemark_backfill", {"is_paused": False})
        conf = {"dataset": "ledgers", "start": "2023-02-01T00:00:00+00:00", "end": "2023-02-01T06:00:00+00:00",
                "batch_interval": "3 hours", "dry_run": True}
        dep.api("POST", "/api/v2/dags/tidemark_backfill/dagRuns", {"dag_run_id": "port_check", "logical_date": None,
                "conf": conf}, expect=(200, 201))
        state = dep.wait_for("the dry run to finish", lambda: dep.api(
            "GET", "/api/v2/dags/tidemark_backfill/dagRuns/port_check")["state"] in ("success", "failed") and dep.api(
            "GET", "/api/v2/dags/tidemark_backfill/dagRuns/port_check")["state"], timeout=180, every=1)
        assert state == "success", f"dry run ended {state}\n{dep.task_logs_digest('port_check')}"
        ran = time.monotonic() - t0
        print(f"\n[make airflow] standalone on PostgreSQL healthy after {healthy:.1f} s, tidemark_backfill listed after"
              f" {dag_up:.1f} s, a dry run through the execution API on port {port} done after {ran:.1f} s;"
              f" health: { {k: v.get('status') for k, v in health.items() if isinstance(v, dict)} }")
    except BaseException:
        print(f"\n===== standalone logs =====\n{dep.logs_digest(120)}")
        raise
    finally:
        killed = dep.stop(first_signal=signal.SIGINT)
        if killed:
            print(f"[make airflow] {len(killed)} process(es) needed SIGKILL:\n" + "\n".join(killed))
        pg.drop_database(database)
        left = dep.leftovers()
        assert not left, f"standalone processes left running:\n{describe(left)}"
