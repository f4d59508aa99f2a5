"""Re-measure apache/airflow#71172 (reschedule-mode tasks marked failed at short poke intervals) on a
PostgreSQL metadata DB: N runs of tidemark_backfill under a real scheduler at a short
TIDEMARK_POKE_INTERVAL / TIDEMARK_WAIT_INTERVAL, counting every task try that did not succeed.

No fault is injected, so any failed or retried try is spurious. Run from the repo root:

    .venv/bin/python tests/scheduler/measure_71172.py --runs 10 --interval 2 --concurrency 2

Not a test (pytest does not collect it): it takes minutes and prints numbers for the README.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

from harness import AirflowDeployment, free_port, postgres_cluster, scheduler_deployment

from tests.conftest import EmbeddedEngine

DAG_ID = "tidemark_backfill"
FIRST_DAY = datetime(2022, 6, 1, tzinfo=UTC)


def tries(dep: AirflowDeployment, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(not-successful earlier tries, 'state mismatch' audit rows, reschedules) of one run."""
    with dep.metadata() as db:
        bad = db.execute(
            "SELECT task_id, map_index, try_number, state FROM task_instance_history"
            " WHERE dag_id = %s AND run_id = %s AND state IS DISTINCT FROM 'success'",
            (DAG_ID, run_id),
        ).fetchall()
        bad += db.execute(
            "SELECT task_id, map_index, try_number, state FROM task_instance"
            " WHERE dag_id = %s AND run_id = %s AND state IS DISTINCT FROM 'success'",
            (DAG_ID, run_id),
        ).fetchall()
        mismatches = db.execute(
            "SELECT task_id, map_index, try_number, extra FROM log WHERE event = 'state mismatch' AND run_id = %s",
            (run_id,),
        ).fetchall()
        n = db.execute(
            "SELECT count(*) AS n FROM task_reschedule tr JOIN task_instance ti ON ti.id = tr.ti_id"
            " WHERE ti.dag_id = %s AND ti.run_id = %s",
            (DAG_ID, run_id),
        ).fetchone()
    return bad, mismatches, int(n["n"]) if n else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--interval", type=float, default=2.0, help="TIDEMARK_POKE_INTERVAL and TIDEMARK_WAIT_INTERVAL")
    ap.add_argument("--concurrency", type=int, default=2, help="runs in flight at once")
    ap.add_argument("--hours", type=int, default=24, help="window of each run")
    ap.add_argument("--batch", default="3 hours")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="measure-71172-"))
    engine = EmbeddedEngine(root / "db", free_port())
    engine.start()
    try:
        with postgres_cluster() as pg, scheduler_deployment(
            pg, engine.dsn, home=root / "airflow-home",
            extra_env={"TIDEMARK_POKE_INTERVAL": str(args.interval), "TIDEMARK_WAIT_INTERVAL": str(args.interval),
                       "TIDEMARK_MAX_PARALLEL_BATCHES": "4", "TIDEMARK_RETRY_DELAY": "2"},
        ) as dep:
            dep.wait_until_dag_ready(DAG_ID)
            dep.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
            results = []
            t_all = time.monotonic()
            for wave in range(0, args.runs, args.concurrency):
                ids = []
                for i in range(wave, min(args.runs, wave + args.concurrency)):
                    start = FIRST_DAY + timedelta(days=i)
                    run_id = f"m71172_{i:02d}"
                    conf = {"dataset": "ledgers", "start": start.isoformat(),
                            "end": (start + timedelta(hours=args.hours)).isoformat(), "batch_interval": args.batch}
                    dep.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns",
                            {"dag_run_id": run_id, "logical_date": None, "conf": conf}, expect=(200, 201))
                    ids.append((run_id, time.monotonic()))
                for run_id, t0 in ids:
                    def done(run_id: str = run_id) -> str | None:
                        state = dep.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
                        return state if state in ("success", "failed") else None
                    state = dep.wait_for(f"run {run_id}", done, timeout=900, every=1)
                    bad, mismatches, n_resched = tries(dep, run_id)
                    results.append((run_id, state, time.monotonic() - t0, bad, mismatches, n_resched))
                    print(f"{run_id}: {state} in {time.monotonic() - t0:.0f} s, {n_resched} reschedules,"
                          f" not-successful tries: {[(b['task_id'], b['map_index'], b['try_number'], b['state']) for b in bad]},"
                          f" state mismatches: {len(mismatches)}", flush=True)
            affected = [r for r in results if r[3] or r[4] or r[1] != "success"]
            print(f"\n#71172 on PostgreSQL metadata DB, poke/wait interval {args.interval} s, {args.runs} runs"
                  f" ({args.concurrency} at a time, {args.hours} h windows in batches of {args.batch}):"
                  f" {len(affected)} run(s) with a spurious failed/retried try or state mismatch;"
                  f" {sum(r[5] for r in results)} reschedules in all; {time.monotonic() - t_all:.0f} s total")
            return 0 if not affected else 1
    finally:
        engine.stop()


if __name__ == "__main__":
    sys.exit(main())
