"""Benchmark 3 - orchestration overhead: ``airflow dags test`` vs a plain Python loop.

The same backfill (``--batches`` batches of ``--batch-minutes`` minutes of the
``ledgers`` dataset, default 50 x 30 min) run

  (a) by Airflow: ``airflow dags test tidemark_backfill -c {...}`` in a
      temporary AIRFLOW_HOME (SQLite metadata, ``airflow db migrate`` first,
      not timed), with the Makefile's environment and TIDEMARK_POKE_INTERVAL=1,
      the connection ``tidemark_timescale`` pointing at the side's database;
  (b) by ``common.run_library_loop``: the same library calls in one thread
      (plan, insert each batch, poke at most once a second, finalize);

each into a fresh database. Reported: both wall times and the ratio (goal
<= 1.5x), and where Airflow's time goes (process start-up and DAG parsing
before the first task, the tasks' own durations from the metadata database,
and the gaps between tasks).

    python bench/bench_airflow.py [--batches 50] [--batch-minutes 30] [--dsn URL]
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BENCH, PLUGINS, REPO, UTC, Ratio, base_parser, fresh_side, log, print_ratios, run_library_loop,
    write_result,
)

from tidemark.connection import connect  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)
NAME = "airflow_overhead"


def airflow_env(home: Path, dsn: str, dataset_spec: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The Makefile's AIRFLOW_ENV (demo target), pointed at this side's database."""
    # Embedded: the URI without its query, exactly as the Makefile writes it; a real server's DSN as given.
    conn_uri = dsn if dataset_spec else dsn.split("?", 1)[0]
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_TIDEMARK_TIMESCALE": conn_uri,
        "TIDEMARK_POKE_INTERVAL": "1",
        "PYTHONPATH": str(PLUGINS),
        **(extra or {}),
    }
    if dataset_spec:
        env["PYTHONPATH"] = f"{BENCH / 'airflow_shim'}{os.pathsep}{PLUGINS}"
        env["TIDEMARK_BENCH_DATASET"] = dataset_spec
    return env


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def migrate(home: Path) -> float:
    env = airflow_env(home, "postgresql://postgres:postgres@127.0.0.1:1/postgres", None)
    t0 = time.perf_counter()
    done = subprocess.run([airflow_bin(), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return time.perf_counter() - t0


def cli_startup(home: Path) -> float:
    """Wall time of a trivial CLI call: the interpreter + Airflow import floor."""
    env = airflow_env(home, "postgresql://postgres:postgres@127.0.0.1:1/postgres", None)
    t0 = time.perf_counter()
    subprocess.run([airflow_bin(), "version"], env=env, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t0


def _ts(v: Any) -> datetime | None:
    if v is None:
        return None
    t = datetime.fromisoformat(str(v).replace(" ", "T"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def task_breakdown(home: Path) -> dict[str, Any]:
    """Per-task durations and reschedules of the latest run, from the SQLite metadata database."""
    db = home / "airflow.db"
    if not db.exists():
        return {}
    with sqlite3.connect(db) as c:
        run = c.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = 'tidemark_backfill' ORDER BY start_date DESC LIMIT 1"
        ).fetchone()
        if not run:
            return {}
        rows = c.execute(
            "SELECT task_id, map_index, state, start_date, end_date, try_number FROM task_instance"
            " WHERE dag_id = 'tidemark_backfill' AND run_id = ?",
            (run[0],),
        ).fetchall()
        try:
            reschedules = dict(c.execute(
                "SELECT ti.task_id, count(*) FROM task_reschedule tr JOIN task_instance ti ON ti.id = tr.ti_id"
                " WHERE ti.dag_id = 'tidemark_backfill' AND ti.run_id = ? GROUP BY ti.task_id",
                (run[0],),
            ).fetchall())
        except sqlite3.Error:
            reschedules = None
    by_task: dict[str, dict[str, float]] = {}
    starts, ends = [], []
    busy = []
    for task_id, _map_index, _state, s, e, _try in rows:
        s, e = _ts(s), _ts(e)
        if not (s and e):
            continue
        d = (e - s).total_seconds()
        t = by_task.setdefault(task_id, {"count": 0, "seconds": 0.0})
        t["count"] += 1
        t["seconds"] = round(t["seconds"] + d, 3)
        starts.append(s)
        ends.append(e)
        busy.append((s, e))
    # Union of the task intervals: time in which some task was running.
    busy.sort()
    union = 0.0
    cur_s = cur_e = None
    for s, e in busy:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                union += (cur_e - cur_s).total_seconds()
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        union += (cur_e - cur_s).total_seconds()
    span = (max(ends) - min(starts)).total_seconds() if starts else 0.0
    return {
        "tasks": by_task,
        "first_task_start": min(starts).isoformat() if starts else None,
        "last_task_end": max(ends).isoformat() if ends else None,
        "tasks_span_seconds": round(span, 3),
        "tasks_busy_seconds": round(union, 3),
        "reschedules": reschedules,
    }


def run_airflow(
    dsn: str, dataset: str, dataset_spec: str | None, end: datetime, step: str, home: Path,
    extra_env: dict[str, str] | None = None, tag: str = "",
) -> dict[str, Any]:
    conf = {"dataset": dataset, "start": START.isoformat(), "end": end.isoformat(), "batch_interval": step}
    env = airflow_env(home, dsn, dataset_spec, extra_env)
    log_path = home / f"dags-test{tag}.log"
    wall0 = datetime.now(UTC)
    t0 = time.perf_counter()
    with open(log_path, "w") as out:
        done = subprocess.run([airflow_bin(), "dags", "test", "tidemark_backfill", "-c", json.dumps(conf)],
                              env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    wall = time.perf_counter() - t0
    wall_end = datetime.now(UTC)
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT run_id, state, report, started_at, finished_at FROM tidemark.runs WHERE dataset = %s"
            " ORDER BY started_at DESC LIMIT 1",
            (dataset,),
        ).fetchone()
    if done.returncode != 0 or not row or row[1] != "succeeded":
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"airflow dags test did not succeed (exit {done.returncode}); log tail:\n{tail}")
    report = row[2]
    breakdown = task_breakdown(home)
    first = _ts(breakdown.get("first_task_start"))
    last = _ts(breakdown.get("last_task_end"))
    return {
        "wall_seconds": round(wall, 3),
        "exit_code": done.returncode,
        "rows": report.get("rows_loaded_total"),
        "batches": report["batches"]["loaded"],
        "chunks": report.get("chunks"),
        "run_started_to_finished_seconds": round((row[4] - row[3]).total_seconds(), 3),
        "before_first_task_seconds": round((first - wall0).total_seconds(), 3) if first else None,
        "after_last_task_seconds": round((wall_end - last).total_seconds(), 3) if last else None,
        "breakdown": breakdown,
        "env": extra_env or {},
        "log": str(log_path),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--batch-minutes", type=int, default=30)
    p.add_argument("--keep-home", action="store_true", help="keep the temporary AIRFLOW_HOME (logs)")
    p.add_argument("--no-variant", dest="variant", action="store_false",
                   help="skip the context run (a') with --variant-env")
    p.add_argument("--variant-env", default="TIDEMARK_MAX_BATCHES_AHEAD=0",
                   help="environment of the context run (a'), KEY=VALUE[,KEY=VALUE] (default: no backpressure)")
    args = p.parse_args(argv)
    if args.quick:
        args.batches = min(args.batches, 10)
    variant_env = dict(kv.split("=", 1) for kv in args.variant_env.split(",") if "=" in kv)
    variant_label = ", ".join(f"{k}={v}" for k, v in variant_env.items())
    step = f"{args.batch_minutes} minutes"
    end = START + timedelta(minutes=args.batch_minutes * args.batches)
    if args.dsn and not args.dsn.startswith(("postgresql://", "postgres://")):
        raise SystemExit("bench_airflow needs a URI DSN (postgresql://...) for AIRFLOW_CONN_TIDEMARK_TIMESCALE")
    home = Path(tempfile.mkdtemp(prefix="tidemark-bench-airflow-"))
    try:
        log(f"airflow: {args.batches} batches of {step}; AIRFLOW_HOME {home}; airflow db migrate (not timed)")
        migrate_s = migrate(home)
        startup_s = min(cli_startup(home) for _ in range(2))
        log(f"  migrate {migrate_s:.1f} s, `airflow version` {startup_s:.2f} s")

        with fresh_side("airflow-dag", args.dsn, dataset=None) as side:
            spec = f"{side.name}:{side.dataset.tables[0].schema}" if args.dsn else None
            log(f"(a) airflow dags test into {side.info['database']}")
            dag = run_airflow(side.dsn, side.name, spec, end, step, home)
            dag["side"] = side.info
        variant = None
        if args.variant:
            with fresh_side("airflow-dag-nobp", args.dsn, dataset=None) as side:
                spec = f"{side.name}:{side.dataset.tables[0].schema}" if args.dsn else None
                log(f"(a') context: airflow dags test with {variant_label}")
                variant = run_airflow(side.dsn, side.name, spec, end, step, home, variant_env, tag="-variant")
                variant["side"] = side.info
        with fresh_side("airflow-loop", args.dsn) as side:
            log(f"(b) plain library loop into {side.info['database']}")
            loop = run_library_loop(side.dsn, side.name, START, end, step, "bench-loop")
            loop["side"] = side.info
    finally:
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)

    ratio = dag["wall_seconds"] / loop["wall_seconds"]
    bd = dag["breakdown"]
    tasks = bd.get("tasks", {})
    insert_task_s = tasks.get("insert_batch", {}).get("seconds", 0.0)
    gaps = (bd.get("tasks_span_seconds") or 0.0) - (bd.get("tasks_busy_seconds") or 0.0)
    parts = {
        "Airflow start-up + DAG parse + run creation (before the first task)": dag["before_first_task_seconds"],
        "tasks running (union of task intervals)": bd.get("tasks_busy_seconds"),
        "gaps between tasks (scheduling, waits, sensor reschedules)": round(gaps, 3),
        "after the last task (teardown, exit)": dag["after_last_task_seconds"],
    }
    dominant = max(((k, v) for k, v in parts.items() if v is not None), key=lambda kv: kv[1])[0]
    print(f"\n{dag['batches']} batches of {step}, {dag['rows']:,} rows per side")
    print(f"(a) airflow dags test:  {dag['wall_seconds']:.1f} s wall   (`airflow version` alone: {startup_s:.1f} s)")
    for k, v in parts.items():
        print(f"      {k:<70} {v if v is not None else 'n/a':>8} s")
    for task_id, t in sorted(tasks.items()):
        print(f"      task {task_id:<30} {t['count']:>4} instance(s), {t['seconds']:.1f} s in total")
    print(f"      reschedules (task waits of TIDEMARK_POKE_INTERVAL = 1 s each): {bd.get('reschedules')}")
    if variant:
        vb = variant["breakdown"]
        print(f"(a') same with {variant_label}: {variant['wall_seconds']:.1f} s wall, "
              f"tasks {vb.get('tasks_busy_seconds')} s, gaps "
              f"{round((vb.get('tasks_span_seconds') or 0) - (vb.get('tasks_busy_seconds') or 0), 1)} s, "
              f"reschedules {vb.get('reschedules')}; {variant['wall_seconds'] / loop['wall_seconds']:.2f}x the loop")
    print(f"(b) plain library loop: {loop['wall_seconds']:.1f} s wall = plan {loop['plan_seconds']:.1f} + insert "
          f"{loop['insert_seconds']:.1f} (generate {loop['generate_seconds']:.1f}, database {loop['db_seconds']:.1f}) "
          f"+ {loop['pokes']} pokes {loop['poke_seconds']:.1f} + finalize {loop['finalize_seconds']:.1f}")
    print(f"what dominates Airflow's extra {dag['wall_seconds'] - loop['wall_seconds']:.1f} s: {dominant}"
          f"; insert_batch tasks took {insert_task_s:.1f} s vs {loop['insert_seconds']:.1f} s of inserts in the loop")

    ratios = [Ratio("orchestration: dags test / library loop", round(ratio, 3), "<= 1.5",
                    note=f"{dag['wall_seconds']:.1f} s vs {loop['wall_seconds']:.1f} s; dominated by: {dominant}")]
    if variant:
        ratios.append(Ratio("orchestration (a') / library loop",
                            round(variant["wall_seconds"] / loop["wall_seconds"], 3), None,
                            note=f"context: dags test with {variant_label}"))
    result = {
        "params": {"batches": args.batches, "batch_minutes": args.batch_minutes, "start": START.isoformat(),
                   "poke_interval": 1, "dsn": bool(args.dsn)},
        "airflow_migrate_seconds": round(migrate_s, 2),
        "airflow_cli_startup_seconds": round(startup_s, 2),
        "dags_test": dag,
        "dags_test_variant": variant,
        "library_loop": loop,
        "overhead_parts": parts,
        "dominant": dominant,
    }
    path = write_result(NAME, result, ratios)
    print(f"result: {path}")
    print_ratios("orchestration overhead", ratios)
    return {"ratios": ratios, "result": result}


if __name__ == "__main__":
    main()
