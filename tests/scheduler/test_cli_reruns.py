"""The ways the README tells people to rerun tidemark_backfill, under a real scheduler on PostgreSQL:
`airflow backfill create` (plain, --reprocess-behavior completed / failed, --max-active-runs 1,
--run-backwards), unpausing the scheduled DAG, and resuming a failed run through REST
clearTaskInstances.

The tests run in file order on the session's deployment and build on each other's days: the first
backfill loads D1..D3, the reruns go over the same days, so each later test also checks that an
earlier load was left alone. The backfilled days are compared by checksum with a clean load of the
same days (the library loading into a fresh schema, while the deployment boots); the REST-resumed
window and the scheduled day by row counts against the source. Backfill and scheduled runs load their
data interval (one day); `--dag-run-conf '{"batch_interval": "12 hours"}'` keeps backfill runs at two
batches a day. A fault switch in the deployment's environment (harness.arm_fault) fails one batch.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from harness import AirflowDeployment, arm_fault, clear_window, fault_firings
from tidemark.flows import backfill
from tidemark.timescale import compressor
from tidemark.declare import catalog
from tidemark.connection import connect, factory
from tidemark.model.dataset import Dataset
from tidemark.model.run_plan import RunPlan
from tidemark.demo.stream import LedgerSource
from tidemark.flows.verify import checksum

from tests.conftest import (
    NO_DUPLICATES,
    duplicate_keys,
    registered,
    rows_in,
    unique_dataset,
)

pytestmark = pytest.mark.slow

D1 = datetime(2023, 4, 10, tzinfo=UTC)
DAY = timedelta(days=1)
DAYS = [D1, D1 + DAY, D1 + 2 * DAY]  # the three-day backfill
D4 = D1 + 3 * DAY  # the day a fault fails
D5 = D1 + 4 * DAY  # the manual run resumed through REST: [D5, D5 + 6 h)
DAG_ID = "tidemark_backfill__ledgers"  # the demo dataset's own DAG (scheduled @daily): what the README reruns
CONF = '{"batch_interval": "12 hours"}'
RUN_TIMEOUT = 420.0


# --------------------------------------------------------------------------- helpers


def day(d: datetime) -> str:
    return d.strftime("%Y-%m-%d")


def backfill_create(dep: AirflowDeployment, *args: str) -> tuple[int, float]:
    """Run `airflow backfill create` exactly as the README shows it; (backfill id, monotonic start).

    Airflow allows one active backfill per DAG, and its scheduler marks a finished backfill complete
    only every 30 s (SchedulerJobRunner._mark_backfills_complete): a create refused for that reason
    is repeated until the previous backfill counts as complete, as a user would.
    """
    with dep.metadata() as db:
        before = db.execute("SELECT coalesce(max(id), 0) AS id FROM backfill").fetchone()["id"]
    deadline = time.monotonic() + 90
    while True:
        t0 = time.monotonic()
        try:
            done = dep.cli("backfill", "create", "--dag-id", DAG_ID, *args)
            break
        except RuntimeError as exc:
            if "Another backfill is running" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)
    with dep.metadata() as db:
        row = db.execute("SELECT max(id) AS id FROM backfill WHERE dag_id = %s", (DAG_ID,)).fetchone()
    assert row["id"] and row["id"] > before, f"no backfill created:\n{done.stdout}\n{done.stderr}"
    return int(row["id"]), t0


def backfill_runs(dep: AirflowDeployment, backfill_id: int) -> list[dict[str, Any]]:
    """The backfill's logical dates in its order, with the DAG run each got (or why it got none)."""
    with dep.metadata() as db:
        return db.execute(
            "SELECT b.sort_ordinal, b.logical_date, b.exception_reason, r.run_id, r.state, r.backfill_id,"
            " r.data_interval_start, r.data_interval_end, r.start_date, r.end_date"
            " FROM backfill_dag_run b LEFT JOIN dag_run r ON r.id = b.dag_run_id"
            " WHERE b.backfill_id = %s ORDER BY b.sort_ordinal",
            (backfill_id,),
        ).fetchall()


def wait_backfill(dep: AirflowDeployment, backfill_id: int) -> list[dict[str, Any]]:
    """Wait until every run of the backfill has finished (success or failed)."""

    def finished() -> list[dict[str, Any]] | None:
        runs = backfill_runs(dep, backfill_id)
        return runs if runs and all(r["state"] in ("success", "failed") for r in runs if r["run_id"]) else None

    return dep.wait_for(f"the runs of backfill {backfill_id}", finished, RUN_TIMEOUT, 1)


def wait_run(dep: AirflowDeployment, run_id: str, timeout: float = RUN_TIMEOUT) -> str:
    def finished() -> str | None:
        state = dep.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        return state if state in ("success", "failed") else None

    return dep.wait_for(f"run {run_id} to finish", finished, timeout, 1)


def wait_idle(dep: AirflowDeployment) -> None:
    """No DAG run queued or running (before arming the fault, so it hits the run the test starts)."""

    def idle() -> bool:
        with dep.metadata() as db:
            return db.execute("SELECT count(*) AS n FROM dag_run WHERE state IN ('queued', 'running')").fetchone()["n"] == 0

    dep.wait_for("no active DAG run", idle, RUN_TIMEOUT, 1)


def tidemark_run(dsn: str, run_id: str) -> dict[str, Any]:
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT state, window_start, window_end, report FROM tidemark.runs WHERE run_id = %s", (f"{DAG_ID}/{run_id}",)
        ).fetchone()
    assert row, f"no tidemark.runs row for {run_id}"
    return {"state": row[0], "start": row[1], "end": row[2], "report": row[3]}


def run_summary(dep: AirflowDeployment, run_id: str) -> str:
    body = dep.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=1000")
    return "\n".join(f"  {t['task_id']}[{t['map_index']}] {t['state']} try {t['try_number']}" for t in body["task_instances"])


def explain(dep: AirflowDeployment, runs: list[dict[str, Any]]) -> str:
    parts = [f"{r['logical_date']}: {r['run_id']} {r['state']} {r['exception_reason'] or ''}" for r in runs]
    for r in runs:
        if r["run_id"] and r["state"] != "success":
            parts.append(f"{r['run_id']}:\n{run_summary(dep, r['run_id'])}\n{dep.task_logs_digest(r['run_id'])}")
    return "\n".join(parts)


def day_state(conn: psycopg.Connection, ds: Dataset, d: datetime) -> dict[str, tuple[int, str]]:
    return checksum(conn, ds, d, d + DAY)


def all_compressed(conn: psycopg.Connection, ds: Dataset, start: datetime, end: datetime) -> list[str]:
    """Names of chunks in [start, end) that are not compressed (empty: all are)."""
    chunks = compressor.list_chunks(conn, ds, start, end)
    assert chunks, f"no chunks in [{start}, {end})"
    return [c.name for c in chunks if not c.is_compressed]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ledgers(dsn: str) -> Dataset:
    """The registered `ledgers` dataset (the scheduler's processes only know registered ones), with the
    test's days cleared (matters only against a persistent TIDEMARK_TEST_DSN server)."""
    ds = catalog.get("ledgers")
    with connect(dsn) as conn:
        clear_window(conn, ds, D1 - DAY, D5 + DAY)
    return ds


@pytest.fixture(scope="session")  # session: it is set up before `unpaused`, while the deployment boots
def oracle(dsn: str) -> dict[datetime, dict[str, tuple[int, str]]]:
    """Checksums per day of a clean load of D1..D4 into a fresh schema, through the library."""
    with connect(dsn) as conn:
        ds = unique_dataset(conn)
    with registered(ds):
        connect_ = factory(dsn)
        req = backfill.BackfillRequest.from_params(
            {"dataset": ds.name, "start": D1.isoformat(), "end": (D4 + DAY).isoformat(), "batch_interval": "1 day"}
        )
        planned = backfill.plan_run(connect_, req, f"oracle-{uuid.uuid4().hex[:6]}", lambda _key: True)
        plan = RunPlan.of(planned["plan"])
        results = {b.index: backfill.insert_batch(connect_, plan, b) for b in plan.batches}
        states = {i: "success" for i in results}
        backfill.finalize(connect_, plan, states, results)
        with connect(dsn) as conn:
            return {d: day_state(conn, ds, d) for d in [*DAYS, D4]}


# --------------------------------------------------------------------------- the tests


MEASURED: dict[str, float] = {}


def test_backfill_create_three_days_loads_each_data_interval_exactly(
    deployment: AirflowDeployment, oracle: dict[datetime, Any], unpaused: datetime, dsn: str, ledgers: Dataset
) -> None:
    dep = deployment
    backfill_id, t0 = backfill_create(dep, "--from-date", day(DAYS[0]), "--to-date", day(DAYS[-1]), "--dag-run-conf", CONF)
    runs = wait_backfill(dep, backfill_id)
    MEASURED["backfill_create_3_days"] = wall = time.monotonic() - t0
    assert [r["state"] for r in runs] == ["success"] * 3, explain(dep, runs)
    assert [r["data_interval_start"] for r in runs] == DAYS
    assert [r["data_interval_end"] for r in runs] == [d + DAY for d in DAYS]
    with connect(dsn) as conn:
        for r in runs:
            tm = tidemark_run(dsn, r["run_id"])
            # Each run loaded its own data interval, in two batches, and nothing else.
            assert (tm["state"], tm["start"], tm["end"]) == ("succeeded", r["data_interval_start"], r["data_interval_end"])
            assert tm["report"]["batches"]["loaded"] == 2, tm["report"]["batches"]
            assert tm["report"]["rows_in_window"] == LedgerSource().expected_counts(tm["start"], tm["end"])
        for d in DAYS:
            assert day_state(conn, ledgers, d) == oracle[d], f"{day(d)} differs from a clean run"
        assert duplicate_keys(conn, ledgers) == NO_DUPLICATES
        assert not all_compressed(conn, ledgers, DAYS[0], DAYS[-1] + DAY)
    print(f"\n[backfill create] 3 days: trigger -> all runs success in {wall:.1f} s "
          f"(runs: {[(r['run_id'], (r['end_date'] - r['start_date']).total_seconds()) for r in runs]})")


def test_resume_through_rest_clear_task_instances_only_failed(
    deployment: AirflowDeployment, unpaused: datetime, dsn: str, ledgers: Dataset
) -> None:
    dep = deployment
    start, end = D5, D5 + timedelta(hours=6)
    run_id = f"rest_resume__{uuid.uuid4().hex[:6]}"
    conf = {"dataset": "ledgers", "start": start.isoformat(), "end": end.isoformat(), "batch_interval": "3 hours"}
    wait_idle(dep)
    arm_fault(dep.home)
    dep.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf},
            expect=(200, 201))
    assert wait_run(dep, run_id) == "failed", run_summary(dep, run_id)
    assert fault_firings(dep.home) == 3
    # The README's resume: clear the run's failed task instances.
    body = {"dag_run_id": run_id, "only_failed": True, "dry_run": False}
    cleared = dep.api("POST", f"/api/v2/dags/{DAG_ID}/clearTaskInstances", body)
    cleared_tasks = sorted((t["task_id"], t["map_index"]) for t in cleared["task_instances"])
    assert ("insert_batch", 0) in cleared_tasks and ("insert_batch", 1) not in cleared_tasks, cleared_tasks
    assert wait_run(dep, run_id) == "success", run_summary(dep, run_id) + dep.task_logs_digest(run_id)
    tm = tidemark_run(dsn, run_id)
    assert tm["state"] == "succeeded", tm
    with connect(dsn) as conn:
        assert rows_in(conn, ledgers, start, end) == LedgerSource().expected_counts(start, end)
        assert duplicate_keys(conn, ledgers) == NO_DUPLICATES
        assert not all_compressed(conn, ledgers, start, end)
    print(f"\n[REST clearTaskInstances] cleared {cleared_tasks}; run {run_id} resumed to success")


def test_reprocess_completed_reruns_every_day_without_changing_a_row(
    deployment: AirflowDeployment, unpaused: datetime, dsn: str, ledgers: Dataset, oracle: dict[datetime, Any]
) -> None:
    dep = deployment
    with connect(dsn) as conn:
        before = {d: day_state(conn, ledgers, d) for d in DAYS}
    backfill_id, t0 = backfill_create(dep, "--from-date", day(DAYS[0]), "--to-date", day(DAYS[-1]),
                                      "--reprocess-behavior", "completed", "--dag-run-conf", CONF)
    runs = wait_backfill(dep, backfill_id)
    MEASURED["reprocess_completed"] = time.monotonic() - t0
    assert [r["state"] for r in runs] == ["success"] * 3, explain(dep, runs)
    assert all(r["backfill_id"] == backfill_id for r in runs), "the existing runs were not taken over by the rerun"
    for r in runs:
        batches = tidemark_run(dsn, r["run_id"])["report"]["batches"]
        assert (batches["loaded"], batches["already_loaded"]) == (0, 2), batches
    with connect(dsn) as conn:
        assert {d: day_state(conn, ledgers, d) for d in DAYS} == before == {d: oracle[d] for d in DAYS}
        assert not all_compressed(conn, ledgers, DAYS[0], DAYS[-1] + DAY)


def test_a_failed_day_then_reprocess_failed_reruns_only_that_day(
    deployment: AirflowDeployment, unpaused: datetime, dsn: str, ledgers: Dataset, oracle: dict[datetime, Any]
) -> None:
    dep = deployment
    wait_idle(dep)
    arm_fault(dep.home)  # batch 0 of the next run that loads anything fails all 3 tries
    failing_id, _ = backfill_create(dep, "--from-date", day(D4), "--to-date", day(D4), "--dag-run-conf", CONF)
    [failed] = wait_backfill(dep, failing_id)
    assert failed["state"] == "failed", explain(dep, [failed])
    assert fault_firings(dep.home) == 3
    with dep.metadata() as db:
        earlier = {r["run_id"]: r["end_date"] for r in db.execute(
            "SELECT run_id, end_date FROM dag_run WHERE dag_id = %s AND logical_date = ANY(%s)", (DAG_ID, DAYS)
        ).fetchall()}

    backfill_id, _ = backfill_create(dep, "--from-date", day(DAYS[0]), "--to-date", day(D4),
                                     "--reprocess-behavior", "failed", "--dag-run-conf", CONF)
    runs = wait_backfill(dep, backfill_id)
    rerun = [r for r in runs if r["run_id"]]
    assert [r["logical_date"] for r in rerun] == [D4], explain(dep, runs)
    assert {r["exception_reason"] for r in runs if not r["run_id"]} == {"already exists"}, explain(dep, runs)
    assert rerun[0]["run_id"] == failed["run_id"] and rerun[0]["state"] == "success", explain(dep, runs)
    with dep.metadata() as db:
        after = {r["run_id"]: r["end_date"] for r in db.execute(
            "SELECT run_id, end_date FROM dag_run WHERE dag_id = %s AND logical_date = ANY(%s)", (DAG_ID, DAYS)
        ).fetchall()}
    assert after == earlier, "a day that had succeeded was run again"
    tm = tidemark_run(dsn, failed["run_id"])
    # The retry loads only the batch the fault stopped; the other half of the day had committed.
    assert tm["state"] == "succeeded" and tm["report"]["batches"]["loaded"] == 1, tm["report"]["batches"]
    with connect(dsn) as conn:
        assert day_state(conn, ledgers, D4) == oracle[D4], "the rerun day differs from a clean run"
        assert duplicate_keys(conn, ledgers) == NO_DUPLICATES
        assert not all_compressed(conn, ledgers, D4, D4 + DAY)


def test_run_backwards_with_max_active_runs_1_runs_newest_first_one_at_a_time(
    deployment: AirflowDeployment, unpaused: datetime, dsn: str, ledgers: Dataset, oracle: dict[datetime, Any]
) -> None:
    # tidemark_backfill has no depends_on_past task (each run claims and loads its own window), so
    # Airflow allows --run-backwards; it refuses it only for DAGs with depends_on_past.
    dep = deployment
    backfill_id, _ = backfill_create(dep, "--from-date", day(DAYS[0]), "--to-date", day(DAYS[-1]),
                                     "--reprocess-behavior", "completed", "--run-backwards", "--max-active-runs", "1",
                                     "--dag-run-conf", CONF)
    with dep.metadata() as db:
        assert db.execute("SELECT max_active_runs FROM backfill WHERE id = %s", (backfill_id,)).fetchone()[
            "max_active_runs"] == 1
    runs = wait_backfill(dep, backfill_id)
    assert [r["state"] for r in runs] == ["success"] * 3, explain(dep, runs)
    assert [r["logical_date"] for r in runs] == DAYS[::-1], "sort order is not newest first"
    by_start = sorted(runs, key=lambda r: r["start_date"])
    assert [r["logical_date"] for r in by_start] == DAYS[::-1], "runs did not start newest first"
    for a, b in itertools.pairwise(by_start):
        assert a["end_date"] <= b["start_date"], f"runs overlapped although --max-active-runs 1: {a} {b}"
    with connect(dsn) as conn:
        assert {d: day_state(conn, ledgers, d) for d in DAYS} == {d: oracle[d] for d in DAYS}


def test_unpausing_runs_the_latest_data_interval_and_loads_exactly_it(
    deployment: AirflowDeployment, unpaused: datetime, dsn: str
) -> None:
    """The scheduled run created when the session unpaused the DAG (catchup=False: only the latest
    complete interval), long finished by now: it ran alongside the backfill tests."""
    dep = deployment
    today = unpaused.replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = today - DAY, today
    ds = catalog.get("ledgers")

    def scheduled() -> list[dict[str, Any]]:
        return dep.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?run_type=scheduled")["dag_runs"]

    runs = dep.wait_for("the scheduled run", scheduled, 120, 1)
    assert len(runs) == 1, json.dumps(runs, indent=1)
    run = runs[0]
    assert wait_run(dep, run["dag_run_id"]) == "success", run_summary(dep, run["dag_run_id"])
    assert (run["data_interval_start"], run["data_interval_end"]) == (
        start.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z")), run
    tm = tidemark_run(dsn, run["dag_run_id"])
    assert (tm["state"], tm["start"], tm["end"]) == ("succeeded", start, end), tm
    with connect(dsn) as conn:
        assert rows_in(conn, ds, start, end) == LedgerSource().expected_counts(start, end)
        hour = timedelta(hours=1)
        assert sum(rows_in(conn, ds, start - hour, start).values()) == 0, "loaded before its data interval"
        assert sum(rows_in(conn, ds, end, end + hour).values()) == 0, "loaded after its data interval"
    if MEASURED:
        print(f"\n[measured] {MEASURED}")
