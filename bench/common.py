"""Shared plumbing for Tidemark's benchmarks (``make bench``; not part of the test suite).

Every measured side gets a database of its own:

* by default a fresh embedded engine (``embedded/dbctl start`` on a free port
  with a temporary data dir), stopped and deleted afterwards;
* with ``--dsn URL`` or ``TIDEMARK_BENCH_DSN``, a real server: each side then
  uses its own dataset name and schema, and drops them (and its bookkeeping
  rows) when it is done.

Results: ``bench/results/<name>.json``; every benchmark prints its ratios last.
``TIDEMARK_BENCH_PLUGINS=/path/to/plugins`` benchmarks another copy of the
core library (a candidate change) with the same harness;
``TIDEMARK_BENCH_RESULTS=DIR`` writes its results elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = Path(os.environ.get("TIDEMARK_BENCH_RESULTS") or BENCH / "results").resolve()
DBCTL = REPO / "embedded" / "dbctl"
# TIDEMARK_BENCH_PLUGINS: benchmark another copy of the core (e.g. a candidate patch) against the same harness.
PLUGINS = Path(os.environ.get("TIDEMARK_BENCH_PLUGINS") or REPO / "plugins").resolve()
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

import psycopg  # noqa: E402


from tidemark import demo  # noqa: E402
from tidemark.declare import catalog  # noqa: E402
from tidemark.connection import connect  # noqa: E402
from tidemark.model.dataset import Dataset  # noqa: E402
from tidemark.demo.ledgers import ledgers_dataset  # noqa: E402
from tidemark.timescale.schema import ensure_schema  # noqa: E402

UTC = timezone.utc

demo.enable()
DSN_ENV = "TIDEMARK_BENCH_DSN"


# ----------------------------------------------------------------- engines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedEngine:
    """One embedded engine process with its own temporary data dir, driven through dbctl."""

    def __init__(self, label: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"tidemark-bench-{label}-"))
        self.data_dir = self.root / "db"
        self.port = 0
        self.start_seconds = 0.0

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def _ctl(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TIDEMARK_DB_DATA": str(self.data_dir), "TIDEMARK_DB_PORT": str(self.port)}
        return subprocess.run([str(DBCTL), command], env=env, capture_output=True, text=True, timeout=180)

    def start(self) -> None:
        last = ""
        for _ in range(3):  # another process may grab the free port between our probe and the bind
            self.port = free_port()
            t0 = time.perf_counter()
            done = self._ctl("start")
            if done.returncode == 0:
                self.start_seconds = time.perf_counter() - t0
                return
            last = f"{done.stdout}\n{done.stderr}"
            if "already in use" not in last:
                break
        raise RuntimeError(f"embedded engine failed to start (data {self.data_dir}):\n{last}")

    def rss_mib(self) -> float | None:
        try:
            pid = int(Path(f"{self.data_dir}.pid").read_text().strip())
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (OSError, ValueError):
            return None
        return None

    def stop(self) -> None:
        try:
            self._ctl("stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Side:
    """One measured side: where to connect and which dataset (registered by name) to load."""

    label: str
    dsn: str
    dataset: Dataset
    engine: EmbeddedEngine | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.dataset.name


def _drop_dataset(dsn: str, ds: Dataset) -> None:
    with connect(dsn) as conn:
        for schema in sorted({t.schema for t in ds.tables}):
            conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema)))
        if conn.execute("SELECT to_regclass('tidemark.batch_ledger') IS NOT NULL").fetchone()[0]:
            for table in ("batch_ledger", "runs", "compression_log", "paused_policies", "cursors"):
                conn.execute(
                    psycopg.sql.SQL("DELETE FROM tidemark.{} WHERE dataset = %s").format(psycopg.sql.Identifier(table)),
                    (ds.name,),
                )


@contextmanager
def fresh_side(label: str, dsn: str | None = None, *, dataset: str | None = None) -> Iterator[Side]:
    """A fresh database for one measured side (see the module docstring).

    Embedded: a new engine; the dataset is the plain ``ledgers`` dataset unless
    ``dataset`` names another. Real server: a unique dataset name and schema,
    registered in ``tidemark.declare.catalog`` so the library's steps find it, dropped
    afterwards.
    """
    if dsn:
        tag = f"{label}_{uuid.uuid4().hex[:6]}".lower().replace("-", "_")
        name = dataset or f"bench_{tag}"
        ds = ledgers_dataset(name=name, schema=f"bench_{tag}")
        catalog.register(name, lambda: ledgers_dataset(name=name, schema=f"bench_{tag}"))
        with connect(dsn) as conn:
            ensure_schema(conn, ds)
        try:
            yield Side(label, dsn, ds, None, {"database": "server (dsn)", "schema": f"bench_{tag}"})
        finally:
            try:
                _drop_dataset(dsn, ds)
            finally:
                catalog.unregister(name)
        return
    engine = EmbeddedEngine(label)
    try:
        engine.start()
        name = dataset or "ledgers"
        ds = catalog.get(name) if name in catalog.names() else ledgers_dataset(name=name)
        if name not in catalog.names():
            catalog.register(name, lambda: ledgers_dataset(name=name))
        with connect(engine.dsn) as conn:
            ensure_schema(conn, ds)
        info = {"database": "embedded (fresh engine)", "engine_start_s": round(engine.start_seconds, 2)}
        yield Side(label, engine.dsn, ds, engine, info)
    finally:
        engine.stop()


# ----------------------------------------------------------------- stats and output


def stats(values: Sequence[float]) -> dict[str, float]:
    vals = [float(v) for v in values]
    if not vals:
        return {"n": 0}
    return {"n": len(vals), "min": min(vals), "median": statistics.median(vals), "max": max(vals)}


def fmt_stats(s: dict[str, float], unit: str = "s", digits: int = 3) -> str:
    if not s.get("n"):
        return "n/a"
    return f"min {s['min']:.{digits}f} / median {s['median']:.{digits}f} / max {s['max']:.{digits}f} {unit} (n={s['n']})"


@dataclass
class Ratio:
    """One headline number with its goal: what run_all's summary table shows."""

    name: str
    value: float | None
    goal: str | None  # e.g. ">= 0.8"; None: context only, no goal
    unit: str = "x"
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None or self.goal is None:
            return None
        op, _, bound = self.goal.partition(" ")
        b = float(bound)
        return {"<=": self.value <= b, "<": self.value < b, ">=": self.value >= b, ">": self.value > b}[op]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "goal": self.goal, "unit": self.unit, "met": self.met,
                "note": self.note}


def environment() -> dict[str, Any]:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load] if load else None,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_result(name: str, result: dict[str, Any], ratios: Sequence[Ratio]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "environment": environment(), **result, "ratios": [r.to_dict() for r in ratios]}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def print_ratios(title: str, ratios: Sequence[Ratio]) -> None:
    print(f"\n== {title}: ratios ==")
    for r in ratios:
        print("  " + ratio_line(r))


def ratio_line(r: Ratio) -> str:
    value = "n/a" if r.value is None else (f"{r.value:.3f}{r.unit}" if r.unit == "x" else f"{r.value:.3f} {r.unit}")
    verdict = {True: "MET", False: "MISSED", None: "-" if r.goal is None else "n/a"}[r.met]
    goal = "(context)" if r.goal is None else f"{r.goal}{'' if r.unit == 'x' else ' ' + r.unit}"
    return f"{r.name:<46} {value:>14}   goal {goal:<14} {verdict:<6} {r.note}"


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--dsn", default=os.environ.get(DSN_ENV),
                   help=f"benchmark a real TimescaleDB server instead of fresh embedded engines (env {DSN_ENV})")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    return p


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ----------------------------------------------------------------- the plain library loop


def run_library_loop(
    dsn: str, dataset: str, start: datetime, end: datetime, step: str, run_id: str, *, poke_interval: float = 1.0
) -> dict[str, Any]:
    """The backfill without Airflow: plan, load every batch in order, poke, finalize.

    The same calls the DAG's tasks make, one after another in this thread. The
    sensor's role is kept: after a batch, ``backfill.poke`` runs if at least
    ``poke_interval`` seconds passed since the last poke (the DAG's sensor pokes
    every TIDEMARK_POKE_INTERVAL s), and once the last batch is in, it pokes
    until the watermark is complete; then finalize.
    """
    from tidemark.flows import backfill, progressive
    from tidemark.connection import factory

    connect_ = factory(dsn)
    t0 = time.perf_counter()
    request = backfill.BackfillRequest.from_params(
        {"dataset": dataset, "start": start.isoformat(), "end": end.isoformat(), "batch_interval": step}
    )
    planned = backfill.plan_run(connect_, request, run_id)
    t_plan = time.perf_counter()
    summary, batches = planned["plan"], planned["batches"]
    states: dict[int, str] = {}
    results: dict[int, dict[str, Any]] = {}
    insert_s = poke_s = 0.0
    pokes = 0
    last_poke = time.perf_counter()

    def poke_once() -> bool:
        nonlocal poke_s, pokes, last_poke
        p0 = time.perf_counter()
        outcome = progressive.poke(connect_, summary, states)
        last_poke = time.perf_counter()
        poke_s += last_poke - p0
        pokes += 1
        return outcome.done

    for b in batches:
        i0 = time.perf_counter()
        results[b["index"]] = backfill.insert_batch(connect_, summary, b)
        states[b["index"]] = "success"
        insert_s += time.perf_counter() - i0
        if time.perf_counter() - last_poke >= poke_interval:
            poke_once()
    while batches and not poke_once():
        pass
    f0 = time.perf_counter()
    report = backfill.finalize(connect_, summary, states, results)
    t_end = time.perf_counter()
    return {
        "batches": len(batches),
        "rows": report.get("rows_loaded_total"),
        "wall_seconds": round(t_end - t0, 3),
        "plan_seconds": round(t_plan - t0, 3),
        "insert_seconds": round(insert_s, 3),
        "generate_seconds": round(sum(r["generate_seconds"] for r in results.values()), 3),
        "db_seconds": round(sum(r["db_seconds"] for r in results.values()), 3),
        "poke_seconds": round(poke_s, 3),
        "pokes": pokes,
        "finalize_seconds": round(t_end - f0, 3),
        "chunks": report.get("chunks"),
    }
