"""tidemark_backfill under Airflow's CeleryExecutor: two Celery workers on a Redis broker, each on a
"machine" of its own.

A team outgrowing one machine runs CeleryExecutor: the tasks of one run land on whichever worker
takes them, so nothing may assume they share a machine (spools, temp files, relative paths). Here the
api-server, dag-processor, scheduler and triggerer run as in the other scheduler tests (harness,
PostgreSQL metadata DB), Debian's redis-server is the broker (started and stopped by the test), the
metadata DB is the Celery result backend, and two `airflow celery worker --concurrency 2` processes,
worker-a and worker-b, each have their own AIRFLOW_HOME (so their own task logs and pidfile),
TMPDIR and working directory.

The reference is an `airflow dags test` run of the same conf (in-process tasks, a private SQLite
AIRFLOW_HOME, as `make demo`), loaded first into the same window while the deployment boots; its
checksum is taken, the window cleared, then the Celery run loads it again and must give the same
rows. Which worker ran a task comes from the metadata DB: the scheduler stores each queued task's
Celery task id as task_instance.external_executor_id, and with Celery's result_extended the result
backend's celery_taskmeta.worker names the worker that executed it (task_instance.hostname is the
machine's name, the same for both workers here). The worker's own task-log folder holding that
task's log is checked too, and that each worker's processes work in its own directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import (
    AIRFLOW,
    REPO,
    AirflowDeployment,
    PostgresCluster,
    RedisServer,
    celery_env,
    clean_base_env,
    clear_window,
    conn_uri,
    describe,
    private_tempdir,
    redis_server,
    scheduler_deployment,
    session_members,
    start_celery_worker,
    tail,
)
from tidemark.connection import connect
from tidemark.declare import catalog
from tidemark.demo.synthetic import LedgerSource
from tidemark.flows.verify import checksum
from tidemark.timescale import compressor

from tests.conftest import NO_DUPLICATES, duplicate_keys, rows_in

pytestmark = pytest.mark.slow

DAG_ID = "tidemark_backfill"
# The demo's `ledgers` dataset (a scheduler's processes know only declared datasets), on a day no other
# test loads.
START = datetime(2023, 5, 20, tzinfo=UTC)
END = START + timedelta(days=1)
STEP = "3 hours"  # 8 batches; 6-hour chunks -> 4 per hypertable, 12 in all
BATCHES = 8
CHUNKS = 12
CONF = {"dataset": "ledgers", "start": START.isoformat(), "end": END.isoformat(), "batch_interval": STEP}
WORKERS = ("worker-a", "worker-b")
# The session deployment's knobs (conftest.TIDEMARK_KNOBS): 4 batches at once fill the 2 x 2 worker slots.
# TIDEMARK_DEMO=on declares `ledgers` in the Airflow processes (tests/conftest.py does it for this one).
KNOBS = {
    "TIDEMARK_DEMO": "on",
    "TIDEMARK_POKE_INTERVAL": "10",
    "TIDEMARK_WAIT_INTERVAL": "10",
    "TIDEMARK_MAX_PARALLEL_BATCHES": "4",
    "TIDEMARK_RETRY_DELAY": "2",
}
RUN_TIMEOUT = 420.0  # the run takes ~30-60 s on the 2-core dev machine


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server
    assert not server.running(), f"redis-server (port {server.port}) is still running"


# --------------------------------------------------------------------------- the reference: airflow dags test


def dags_test_reference(dsn: str) -> dict[str, Any]:
    """`airflow dags test tidemark_backfill -c CONF` in a private SQLite AIRFLOW_HOME (as `make demo`);
    returns the window's checksum, the run's report and the wall time."""
    home = private_tempdir("tidemark-dagstest-")
    env = {
        **clean_base_env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW_CONN_TIDEMARK_TIMESCALE": conn_uri(dsn),
        "PYTHONPATH": str(REPO / "plugins"),
        "TIDEMARK_POKE_INTERVAL": "1",
        "TIDEMARK_DEMO": "on",
    }
    t0 = time.monotonic()
    try:
        for args in (["db", "migrate"], ["dags", "test", DAG_ID, "-c", json.dumps(CONF)]):
            done = subprocess.run([AIRFLOW, *args], env=env, cwd=home, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"airflow {' '.join(args[:2])} failed ({done.returncode}):\n"
                                   f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    wall = time.monotonic() - t0
    ds = catalog.get("ledgers")
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT run_id, state, report FROM tidemark.runs WHERE dataset = %s AND window_start = %s"
            " AND window_end = %s ORDER BY started_at DESC LIMIT 1",
            (ds.name, START, END),
        ).fetchone()
        assert row and row[1] == "succeeded", f"the dags test reference run did not succeed: {row}"
        return {"run_id": row[0], "report": row[2], "checksum": checksum(conn, ds, START, END), "wall": wall}


# --------------------------------------------------------------------------- helpers


def workers_answering(broker_url: str) -> set[str]:
    """Names of the Celery workers that answer a broadcast ping on the broker (empty on any error)."""
    from celery import Celery

    app = Celery("tidemark-test-ping", broker=broker_url)
    try:
        return {name for reply in app.control.ping(timeout=2.0) or [] for name in reply}
    except Exception:  # noqa: BLE001 - the broker or a worker not ready yet: ask again
        return set()
    finally:
        app.close()


def executions(dep: AirflowDeployment, run_id: str) -> list[dict[str, Any]]:
    """Every task instance of the run with the Celery worker that executed it (its latest Celery task)."""
    with dep.metadata() as db:
        return db.execute(
            "SELECT ti.task_id, ti.map_index, ti.try_number, ti.state, ti.hostname, ti.pid,"
            " ti.external_executor_id, m.worker, m.status AS celery_status"
            " FROM task_instance ti LEFT JOIN celery_taskmeta m ON m.task_id = ti.external_executor_id"
            " WHERE ti.dag_id = %s AND ti.run_id = %s ORDER BY ti.task_id, ti.map_index",
            (DAG_ID, run_id),
        ).fetchall()


def task_log(machine: Path, run_id: str, task_id: str, map_index: int, try_number: int) -> Path:
    """Where a worker writes a task's log (Airflow's default log_filename_template) under its own AIRFLOW_HOME."""
    mapped = f"map_index={map_index}/" if map_index >= 0 else ""
    return (machine / "airflow-home" / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
            / f"{mapped}attempt={try_number}.log")


def worker_task_logs(machines: dict[str, Path], run_id: str, lines: int = 30, limit: int = 30) -> str:
    parts = []
    for name, machine in machines.items():
        root = machine / "airflow-home" / "logs"
        for path in sorted(root.rglob("*.log"))[:limit] if root.exists() else []:
            if run_id in str(path):
                parts.append(f"----- {name}: {path.relative_to(root)} -----\n{tail(path, lines)}")
    return "\n".join(parts) or "(no task logs on the workers)"


# --------------------------------------------------------------------------- the test


def test_backfill_on_two_celery_workers_loads_the_rows_of_dags_test_every_chunk_compressed(
    pg: PostgresCluster, dsn: str, redis: RedisServer
) -> None:
    t_start = time.monotonic()
    ds = catalog.get("ledgers")
    with connect(dsn) as conn:
        clear_window(conn, ds, START, END)
    database = f"airflow_celery_{uuid.uuid4().hex[:8]}"
    extra = {**KNOBS, **celery_env(redis.url, f"db+postgresql://postgres@127.0.0.1:{pg.port}/{database}")}

    with ThreadPoolExecutor(1) as pool:
        # The reference loads the window while the deployment migrates and boots.
        reference_future: Future[dict[str, Any]] = pool.submit(dags_test_reference, dsn)
        with scheduler_deployment(pg, dsn, extra_env=extra, database=database) as dep:
            machines = {name: dep.home / "machines" / name for name in WORKERS}
            run_id = f"celery_e2e__{uuid.uuid4().hex[:8]}"
            try:
                for name in WORKERS:
                    start_celery_worker(dep, name, machines[name])
                reference = reference_future.result(timeout=600)
                with connect(dsn) as conn:
                    clear_window(conn, ds, START, END)
                    assert sum(rows_in(conn, ds, START, END).values()) == 0
                dep.wait_until_dag_ready(DAG_ID)

                def both_answer() -> set[str] | None:
                    names = workers_answering(redis.url)
                    return names if {n.split("@")[0] for n in names} >= set(WORKERS) else None

                answering = dep.wait_for("both Celery workers to answer a ping", both_answer, timeout=240, every=2)
                # Each worker's processes (the worker and its pool of 2, which forks the task processes) work
                # in the worker's own directory. (Their TMPDIR cannot be read back the same way: setproctitle
                # reuses the memory /proc/<pid>/environ shows.)
                for name in WORKERS:
                    members = session_members([dep.components[name].pid])
                    cwds = {pid: os.readlink(f"/proc/{pid}/cwd") for pid in members}
                    assert len(members) >= 3 and set(cwds.values()) == {str(machines[name] / "cwd")}, (name, cwds)
                booted = time.monotonic() - t_start
                dep.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})

                t0 = time.monotonic()
                dep.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns",
                        {"dag_run_id": run_id, "logical_date": None, "conf": CONF}, expect=(200, 201))

                def finished() -> str | None:
                    state = dep.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
                    return state if state in ("success", "failed") else None

                state = dep.wait_for(f"run {run_id} to finish", finished, RUN_TIMEOUT, 1)
                wall = time.monotonic() - t0
                ran = executions(dep, run_id)
                summary = "\n".join(
                    f"  {r['task_id']}[{r['map_index']}] {r['state']} try {r['try_number']} on {r['worker']}"
                    f" (hostname {r['hostname']}, celery {r['celery_status']})" for r in ran)
                assert state == "success", f"run {run_id} ended {state} after {wall:.0f} s:\n{summary}"

                # ---- (a) the batches ran on both workers (metadata DB: Celery's record of who ran what)
                inserts = [r for r in ran if r["task_id"] == "insert_batch"]
                assert [r["map_index"] for r in inserts] == list(range(BATCHES)), summary
                assert all(r["state"] == "success" for r in ran), summary
                worker_of = {r["map_index"]: (r["worker"] or "").split("@")[0] for r in inserts}
                assert set(worker_of.values()) <= set(WORKERS), f"a batch without a known Celery worker:\n{summary}"
                per_worker = Counter(worker_of.values())
                assert set(per_worker) == set(WORKERS), f"the batches did not run on both workers: {per_worker}\n{summary}"
                # ... and each wrote that batch's task log on its own "machine", none in the shared home.
                for r in inserts:
                    own = machines[worker_of[r["map_index"]]]
                    assert task_log(own, run_id, "insert_batch", r["map_index"], r["try_number"]).is_file(), (
                        f"batch {r['map_index']}: no task log in {own}:\n{worker_task_logs(machines, run_id)}")
                shared = dep.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=insert_batch"
                assert not shared.exists(), f"insert_batch logs in the shared AIRFLOW_HOME: {shared}"

                # ---- (b) exactly the rows of the dags test run; (c) every chunk of the window compressed
                expected = LedgerSource().expected_counts(START, END)
                with connect(dsn) as conn:
                    assert checksum(conn, ds, START, END) == reference["checksum"], "rows differ from the dags test run"
                    assert rows_in(conn, ds, START, END) == expected == {
                        t: n for t, (n, _) in reference["checksum"].items()}
                    assert duplicate_keys(conn, ds) == NO_DUPLICATES
                    chunks = compressor.list_chunks(conn, ds, START, END)
                    assert len(chunks) == CHUNKS and all(c.is_compressed for c in chunks), [
                        (c.name, c.is_compressed) for c in chunks]
                    tm = conn.execute("SELECT state, report FROM tidemark.runs WHERE run_id = %s",
                                      (f"{DAG_ID}/{run_id}",)).fetchone()
                assert tm and tm[0] == "succeeded", tm
                assert tm[1]["rows_in_window"] == expected and tm[1]["batches"]["loaded"] == BATCHES, tm[1]
            except BaseException:
                print(f"\n===== Celery run {run_id}: task logs on the workers =====\n{worker_task_logs(machines, run_id)}"
                      f"\n===== component logs =====\n{dep.logs_digest()}")
                raise
    total = time.monotonic() - t_start

    print("\n" + "\n".join([
        "=" * 100,
        f"CELERY EXECUTOR E2E  run {run_id}: {ds.name} [{START.isoformat()}, {END.isoformat()}) in batches of {STEP}",
        f"  broker redis-server {redis.url}; workers answering: {sorted(answering)}",
        f"  dags test reference {reference['run_id']}: {reference['wall']:.1f} s (SQLite migrate + dags test)",
        f"  deployment + both workers up after {booted:.1f} s; trigger -> run success {wall:.1f} s; test {total:.1f} s",
        f"  insert_batch per Celery worker: {dict(sorted(per_worker.items()))};"
        f" task_instance.hostname values: {sorted({str(r['hostname']) for r in ran})}",
        *[f"    batch {r['map_index']}: {r['worker']} try {r['try_number']} pid {r['pid']}" for r in inserts],
        f"  rows {sum(expected.values()):,} = dags test's, checksum {reference['checksum']}",
        f"  chunks: {len(chunks)} in the window, all compressed",
        "=" * 100,
    ]))
    if dep.killed:
        print(f"[celery] {len(dep.killed)} process(es) needed SIGKILL after SIGTERM:\n" + "\n".join(dep.killed))
    left = dep.leftovers()
    assert not left, f"Airflow processes left running:\n{describe(left)}"
