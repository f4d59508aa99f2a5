"""Does an open Tidemark tab slow a running load? The demo with the page refreshing vs. closed.

Runs ``make demo``'s load (``airflow dags test tidemark_backfill``, ``TIDEMARK_POKE_INTERVAL=1``)
several times on one fresh embedded engine, each over its own window, alternating "page closed"
and "page open". With the page open, a thread does what the tab does every refresh
(``--interval``, the page's 5 s by default): the run's view (``progress.run_view``) plus the nav
list (``progress.recent_runs``) over one long-lived connection, timing each refresh's database
statements (the time the embedded engine's single session is busy for the page).

Prints the ratio open/closed of the demo's wall time and of the load's rows/s, and the refresh
times; writes ``bench/results/ui.json``. Self-contained (not part of ``make bench``'s table).

    .venv/bin/python bench/bench_ui.py            # 2 runs per side, 4 days each: about 5 minutes
    .venv/bin/python bench/bench_ui.py --quick    # 1 run per side, 1 day each
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

import psycopg  # noqa: E402 - after the sys.path insert above
from tidemark.state import progress  # noqa: E402
from tidemark.connection import connect  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dbctl(cmd: str, data: Path, port: int) -> None:
    env = {**os.environ, "TIDEMARK_DB_DATA": str(data), "TIDEMARK_DB_PORT": str(port)}
    done = subprocess.run([str(REPO / "embedded" / "dbctl"), cmd], env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 and cmd == "start":
        raise RuntimeError(f"embedded engine failed to start: {done.stdout}{done.stderr}")


def airflow_env(home: Path, dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TIDEMARK_"))}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False", "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_TIDEMARK_TIMESCALE": dsn.split("?")[0], "PYTHONPATH": str(REPO / "plugins"),
        "TIDEMARK_POKE_INTERVAL": "1",
    })
    return env


class Page(threading.Thread):
    """What an open tab costs the database: one refresh every ``interval`` seconds while the run runs."""

    def __init__(self, dsn: str, dataset: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.dsn, self.dataset, self.interval = dsn, dataset, interval
        self.stop = threading.Event()
        self.refresh_ms: list[float] = []

    def run(self) -> None:
        with connect(self.dsn) as conn:
            while not self.stop.wait(self.interval):
                try:
                    found = conn.execute(
                        "SELECT run_id FROM tidemark.runs WHERE dataset = %s AND state = 'running'"
                        " ORDER BY started_at DESC LIMIT 1", (self.dataset,),
                    ).fetchone()
                except psycopg.Error:
                    continue
                if not found:
                    continue
                t0 = time.perf_counter()  # the page knows its run id: only its own reads count (waits included)
                progress.run_view(conn, found[0])
                progress.recent_runs(conn)
                self.refresh_ms.append((time.perf_counter() - t0) * 1000)


def demo(env: dict[str, str], dsn: str, start: datetime, days: int, page_interval: float | None) -> dict[str, Any]:
    conf = {"dataset": "ledgers", "start": start.isoformat(), "end": (start + timedelta(days=days)).isoformat(),
            "batch_interval": "3 hours"}
    page = Page(dsn, "ledgers", page_interval) if page_interval else None
    if page:
        page.start()
    t0 = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "dags", "test", "tidemark_backfill", "-c",
                           json.dumps(conf)], env=env, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.monotonic() - t0
    if page:
        page.stop.set()
        page.join(30)
    with connect(dsn) as conn:
        state, report = conn.execute(
            "SELECT state, report FROM tidemark.runs WHERE dataset = 'ledgers' AND window_start = %s", (start,)
        ).fetchone()
    if done.returncode != 0 or state != "succeeded":
        raise RuntimeError(f"demo run failed ({done.returncode}, {state}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return {"page_open": bool(page), "window_start": start.isoformat(), "wall_seconds": round(wall, 2),
            "rows_per_second": report["rows_per_second"], "load_seconds": report["load_seconds"],
            "refresh_ms": [round(x, 2) for x in page.refresh_ms] if page else []}


def idle_hold(dsn: str, samples: int) -> dict[str, Any]:
    """Refreshes on the idle engine after the loads: nothing to wait for, so the time is the hold itself."""
    with connect(dsn) as conn:
        key = conn.execute("SELECT run_id FROM tidemark.runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
        tab, nav = [], []
        for _ in range(samples):
            t0 = time.perf_counter()
            progress.run_view(conn, key)
            tab.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            progress.recent_runs(conn)
            nav.append((time.perf_counter() - t0) * 1000)
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + progress._RUN, (key,)).fetchone()[0][0]
        # A long run: its history at the cap (what a months-long backfill's tab reads every refresh).
        for i in range(progress.HISTORY_CAP - len((progress.run_view(conn, key) or {}).get("history", []))):
            progress.record_poke(conn, key, watermark_batches=i, watermark_time=START, backlog_chunks=i,
                                 backlog_bytes=i, remaining_chunks=0, remaining_bytes=0)
        full = []
        for _ in range(samples):
            t0 = time.perf_counter()
            progress.run_view(conn, key)
            full.append((time.perf_counter() - t0) * 1000)
    return {
        "tab_ms_history_at_cap": {"median": round(statistics.median(full), 2), "max": round(max(full), 2)},
        "samples": samples,
        "tab_ms": {"median": round(statistics.median(tab), 2), "max": round(max(tab), 2)},
        "nav_ms": {"median": round(statistics.median(nav), 2), "max": round(max(nav), 2)},
        "tab_execution_ms": round(plan["Planning Time"] + plan["Execution Time"], 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="runs per side (alternating closed/open)")
    ap.add_argument("--days", type=int, default=4, help="days of `ledgers` per run (the demo: 4)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between refreshes (the page: 5)")
    ap.add_argument("--samples", type=int, default=50, help="refreshes timed on the idle engine at the end")
    ap.add_argument("--quick", action="store_true", help="1 run per side of 1 day")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.days = 1, 1
    with tempfile.TemporaryDirectory(prefix="tidemark-bench-ui-") as tmp:
        data, port = Path(tmp) / "db", free_port()
        dbctl("start", data, port)
        dsn = f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
        try:
            env = airflow_env(Path(tmp) / "airflow", dsn)
            subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env,
                           capture_output=True, check=True, timeout=600)
            runs = []
            # ABBA order (closed, open, open, closed, ...): a load on the machine that drifts over the
            # benchmark (other work on the same cores) biases neither side.
            order = [False, True, True, False] * ((args.runs + 1) // 2)
            order = order[: 2 * args.runs]
            for i, open_page in enumerate(order):
                start = START + timedelta(days=i * args.days)
                r = demo(env, dsn, start, args.days, args.interval if open_page else None)
                print(f"run {i + 1}: page {'open  ' if open_page else 'closed'} wall {r['wall_seconds']:6.1f} s, "
                      f"{r['rows_per_second']:,} rows/s"
                      + (f", {len(r['refresh_ms'])} refreshes, median {statistics.median(r['refresh_ms']):.1f} ms"
                         if r["refresh_ms"] else ""), flush=True)
                runs.append(r)
            hold = idle_hold(dsn, args.samples)
        finally:
            dbctl("stop", data, port)
    closed = [r for r in runs if not r["page_open"]]
    opened = [r for r in runs if r["page_open"]]
    refresh = [x for r in opened for x in r["refresh_ms"]]
    busy = [sum(r["refresh_ms"]) / 1000 / r["wall_seconds"] for r in opened]
    result = {
        "idle_refresh": hold,
        "engine_busy_share_while_open": round(max(busy), 5) if busy else None,
        "days": args.days, "runs_per_side": args.runs, "interval": args.interval, "runs": runs,
        "wall_open_vs_closed": round(statistics.median(r["wall_seconds"] for r in opened)
                                     / statistics.median(r["wall_seconds"] for r in closed), 3),
        "rows_per_second_open_vs_closed": round(statistics.median(r["rows_per_second"] for r in opened)
                                                / statistics.median(r["rows_per_second"] for r in closed), 3),
        "refresh_ms": {"n": len(refresh), "median": round(statistics.median(refresh), 2) if refresh else None,
                       "max": round(max(refresh), 2) if refresh else None},
    }
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ui.json").write_text(json.dumps(result, indent=2))
    print(f"one refresh on the idle engine (= how long it holds the session): tab {hold['tab_ms']['median']} ms median,"
          f" {hold['tab_ms']['max']} ms max (engine's own execution time {hold['tab_execution_ms']} ms), with"
          f" {progress.HISTORY_CAP} history rows {hold['tab_ms_history_at_cap']['median']} ms; nav list"
          f" {hold['nav_ms']['median']} ms median; share of the load's wall time the engine spent on the open page:"
          f" {result['engine_busy_share_while_open']:.3%}")
    print(f"page open vs closed: wall time {result['wall_open_vs_closed']}x, rows/s {result['rows_per_second_open_vs_closed']}x"
          f" (goal: within 5 %); refresh database time median {result['refresh_ms']['median']} ms, max "
          f"{result['refresh_ms']['max']} ms over {result['refresh_ms']['n']} refreshes")
    return result


if __name__ == "__main__":
    main()
