"""Benchmark 1 - the insert path against the database's limit.

The same synthetic rows (N batch windows of the ``ledgers`` dataset) are loaded

  (a) by the backfill's loader, ``tidemark.load.loader.load_batch``, batch after batch
      (encode + validate, then one transaction: DELETE window, COPY per table,
      ledger row, asynchronous commit);
  (b) by a bare ``COPY`` of pre-generated, pre-encoded rows: one transaction per
      batch window (``synchronous_commit = off``, as the loader), one COPY per
      table, nothing else. Generation is timed separately, so (b)'s rate is
      the database's limit for this data;
  (c) for context only (no goal): the loader with 2 batches in parallel, as the
      DAG runs batches, so generation overlaps the database.

each into a fresh database. Headline ratio: (a)'s end-to-end rows/s over (b)'s
database rows/s (goal >= 0.8). Also shown: the loader's database-only ratio and
where the loader's time goes (source generation vs database), i.e. which side
limits.

    python bench/bench_insert.py [--batches 8] [--batch-hours 3] [--dsn URL]
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    UTC, Ratio, base_parser, fmt_stats, fresh_side, log, print_ratios, stats, write_result,
)

from psycopg import sql  # noqa: E402


from tidemark.declare import catalog  # noqa: E402
from tidemark.connection import factory  # noqa: E402
from tidemark.load.encoding import TableEncoder  # noqa: E402
from tidemark.load.loader import BatchResult, load_batch  # noqa: E402
from tidemark.model.batch import Batch  # noqa: E402
from tidemark.flows.plan import plan_batches
from tidemark.timescale.schema import table_ident  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)
NAME = "insert"


def plan(batches: int, hours: float) -> list[Batch]:
    step = timedelta(hours=hours)
    return list(plan_batches(START, START + step * batches, step).batches)


def run_loader(dsn: str, ds: Any, batches: list[Batch], run_id: str) -> dict[str, Any]:
    connect = factory(dsn)
    results: list[BatchResult] = []
    t0 = time.perf_counter()
    for b in batches:
        results.append(load_batch(connect, ds, b, run_id))
    wall = time.perf_counter() - t0
    rows = sum(r.total_rows for r in results)
    gen = sum(r.generate_seconds for r in results)
    db = sum(r.db_seconds for r in results)
    return {
        "rows": rows,
        "wall_seconds": round(wall, 3),
        "generate_seconds": round(gen, 3),
        "db_seconds": round(db, 3),
        "rows_per_s": rows / wall,
        "db_rows_per_s": rows / db if db else None,
        "generate_rows_per_s": rows / gen if gen else None,
        "per_batch_rows_per_s": stats([r.total_rows / r.seconds for r in results if r.seconds]),
        "per_batch_db_rows_per_s": stats([r.total_rows / r.db_seconds for r in results if r.db_seconds]),
        "per_batch_seconds": stats([r.seconds for r in results]),
        "per_batch_generate_seconds": stats([r.generate_seconds for r in results]),
        "per_batch_db_seconds": stats([r.db_seconds for r in results]),
    }


def run_loader_parallel(dsn: str, ds: Any, batches: list[Batch], run_id: str, workers: int) -> dict[str, Any]:
    connect = factory(dsn)
    pending = list(reversed(batches))
    lock = threading.Lock()
    results: list[BatchResult] = []
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                if not pending or errors:
                    return
                b = pending.pop()
            try:
                r = load_batch(connect, ds, b, run_id)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
                return
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"loader-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    wall = time.perf_counter() - t0
    rows = sum(r.total_rows for r in results)
    return {"rows": rows, "workers": workers, "wall_seconds": round(wall, 3), "rows_per_s": rows / wall}


def encode(ds: Any, table: Any, rows: list[Any], b: Batch) -> tuple[bytes, int]:
    """COPY text for the rows, by the loader's own encoder (text, as ``psql \\copy`` sends: no binary COPY)."""
    enc = TableEncoder(ds.name, table, b.start, b.end, binary=False)
    enc.add(rows)
    payloads = enc.finish()
    text = b"".join(b"".join(p.chunks()) for p in payloads.parts.values())
    payloads.close()
    return text, payloads.rows


def pregenerate(ds: Any, batches: list[Batch]) -> tuple[dict[int, dict[str, tuple[bytes, int]]], dict[str, float]]:
    """All rows, generated and encoded up front (timed apart from the database)."""
    t0 = time.perf_counter()
    source = ds.source.stream  # the synthetic ledger stream behind the dataset's source
    t_source = time.perf_counter()
    gen = enc = 0.0
    out: dict[int, dict[str, tuple[bytes, int]]] = {}
    for b in batches:
        out[b.index] = {}
        for t in ds.tables:
            g0 = time.perf_counter()
            rows = list(source.rows(t.name, b.start, b.end))
            g1 = time.perf_counter()
            out[b.index][t.name] = encode(ds, t, rows, b)
            gen += g1 - g0
            enc += time.perf_counter() - g1
    return out, {
        "source_init_seconds": round(t_source - t0, 3),
        "rows_seconds": round(gen, 3),
        "encode_seconds": round(enc, 3),
        "total_seconds": round(time.perf_counter() - t0, 3),
    }


def run_bare(dsn: str, ds: Any, batches: list[Batch], payloads: dict[int, dict[str, tuple[bytes, int]]]) -> dict[str, Any]:
    connect = factory(dsn)
    per_batch: list[tuple[int, float]] = []
    with connect() as conn:
        copies = {
            t.name: sql.SQL("COPY {} ({}) FROM STDIN").format(
                table_ident(t), sql.SQL(", ").join(sql.Identifier(c) for c in t.column_names)
            )
            for t in ds.tables
        }
        t0 = time.perf_counter()
        for b in batches:
            b0 = time.perf_counter()
            n = 0
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                with conn.cursor() as cur:
                    for t in ds.tables:
                        payload, count = payloads[b.index][t.name]
                        n += count
                        with cur.copy(copies[t.name]) as copy:
                            copy.write(payload)
            per_batch.append((n, time.perf_counter() - b0))
        wall = time.perf_counter() - t0
    rows = sum(n for n, _ in per_batch)
    return {
        "rows": rows,
        "db_seconds": round(wall, 3),
        "db_rows_per_s": rows / wall,
        "per_batch_db_rows_per_s": stats([n / s for n, s in per_batch]),
        "per_batch_db_seconds": stats([s for _, s in per_batch]),
    }


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=8, help="batch windows to load (default 8)")
    p.add_argument("--batch-hours", type=float, default=3.0, help="hours per batch window (default 3)")
    p.add_argument("--parallel", type=int, default=2, help="workers for the context run (c); 0 skips it")
    p.add_argument("--rounds", type=int, default=3, help="rounds of (a) then (b), fresh databases each (default 3)")
    args = p.parse_args(argv)
    if args.quick:
        args.batches = min(args.batches, 4)
        args.rounds = 1
    batches = plan(args.batches, args.batch_hours)
    log(f"insert: {len(batches)} batches of {args.batch_hours:g} h from {START.isoformat()}")

    payloads, gen = pregenerate(catalog.get("ledgers"), batches)
    loader_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    for k in range(args.rounds):  # alternate the sides, so a burst of load elsewhere hits both
        with fresh_side("insert-loader", args.dsn) as side:
            run = run_loader(side.dsn, side.dataset, batches, "bench-insert-loader")
            run["side"] = side.info
            loader_runs.append(run)
        with fresh_side("insert-bare", args.dsn) as side:
            run = run_bare(side.dsn, side.dataset, batches, payloads)
            run["side"] = side.info
            bare_runs.append(run)
        log(f"round {k + 1}/{args.rounds}: (a) loader {loader_runs[-1]['rows_per_s']:,.0f} rows/s "
            f"(database {loader_runs[-1]['db_rows_per_s']:,.0f}), (b) bare COPY {bare_runs[-1]['db_rows_per_s']:,.0f} rows/s")
    del payloads
    loader = _median_run(loader_runs, "rows_per_s")
    bare = _median_run(bare_runs, "db_rows_per_s")
    loader_rate = statistics.median(r["rows_per_s"] for r in loader_runs)
    loader_db_rate = statistics.median(r["db_rows_per_s"] for r in loader_runs)
    bare["generation"] = gen
    bare["generate_rows_per_s"] = bare["rows"] / gen["total_seconds"]

    parallel = None
    if args.parallel > 0:
        with fresh_side("insert-parallel", args.dsn) as side:
            log(f"(c) loader, {args.parallel} batches in parallel (context), into {side.info['database']}")
            parallel = run_loader_parallel(side.dsn, side.dataset, batches, "bench-insert-par", args.parallel)
            parallel["side"] = side.info

    if loader["rows"] != bare["rows"]:
        raise SystemExit(f"row counts differ: loader {loader['rows']} vs bare {bare['rows']}")
    limit = statistics.median(r["db_rows_per_s"] for r in bare_runs)
    ratio = loader_rate / limit
    db_ratio = loader_db_rate / limit
    gen_share = loader["generate_seconds"] / (loader["generate_seconds"] + loader["db_seconds"])
    if gen_share > 0.55:
        limiting = "source generation + encoding (Python)"
    elif gen_share < 0.45:
        limiting = "the database"
    else:
        limiting = "generation and database about equally"

    print(f"\nrows per side: {loader['rows']:,} in {len(batches)} batches; {args.rounds} round(s), fresh database each; "
          "ratios from the medians, details of the median run")
    print(f"    rounds, (a) end to end: {fmt_stats(stats([r['rows_per_s'] for r in loader_runs]), 'rows/s', 0)}")
    print(f"    rounds, (a) database:   {fmt_stats(stats([r['db_rows_per_s'] for r in loader_runs]), 'rows/s', 0)}")
    print(f"    rounds, (b) bare COPY:  {fmt_stats(stats([r['db_rows_per_s'] for r in bare_runs]), 'rows/s', 0)}")
    print(f"(a) loader (sequential):  {loader['rows_per_s']:>10,.0f} rows/s end to end   "
          f"wall {loader['wall_seconds']:.2f} s = generate {loader['generate_seconds']:.2f} s"
          f" + database {loader['db_seconds']:.2f} s")
    print(f"    database only:        {loader['db_rows_per_s']:>10,.0f} rows/s   "
          f"per batch: {fmt_stats(loader['per_batch_db_rows_per_s'], 'rows/s', 0)}")
    print(f"    per batch end to end: {fmt_stats(loader['per_batch_rows_per_s'], 'rows/s', 0)}")
    print(f"    per batch seconds:    {fmt_stats(loader['per_batch_seconds'])}")
    print(f"    generation only:      {loader['generate_rows_per_s']:>10,.0f} rows/s   "
          f"(generation {gen_share:.0%} / database {1 - gen_share:.0%} of the loader's time: limited by {limiting})")
    print(f"(b) bare COPY:            {bare['db_rows_per_s']:>10,.0f} rows/s database   "
          f"per batch: {fmt_stats(bare['per_batch_db_rows_per_s'], 'rows/s', 0)}")
    print(f"    its generation (apart): {bare['generate_rows_per_s']:>8,.0f} rows/s   "
          f"(source init {gen['source_init_seconds']:.2f} s, rows {gen['rows_seconds']:.2f} s, "
          f"encode {gen['encode_seconds']:.2f} s)")
    if parallel:
        print(f"(c) loader, {parallel['workers']} in parallel:{parallel['rows_per_s']:>9,.0f} rows/s end to end "
              f"({parallel['rows_per_s'] / limit:.2f}x the bare COPY limit; context, no goal)")

    ratios = [
        Ratio("insert: loader / bare COPY (end to end)", round(ratio, 3), ">= 0.8",
              note=f"{loader_rate:,.0f} vs {limit:,.0f} rows/s; generation {gen_share:.0%} of the loader's time"),
        Ratio("insert: loader / bare COPY (database time)", round(db_ratio, 3), ">= 0.8",
              note="loader's db_seconds only (DELETE + COPY + ledger + commit + connect)"),
    ]
    result = {
        "params": {"batches": len(batches), "batch_hours": args.batch_hours, "start": START.isoformat(),
                   "dataset": "ledgers (synthetic)", "parallel_context_workers": args.parallel},
        "loader": loader,
        "bare_copy": bare,
        "medians": {"loader_rows_per_s": loader_rate, "loader_db_rows_per_s": loader_db_rate,
                    "bare_db_rows_per_s": limit},
        "rounds": {"loader": loader_runs, "bare_copy": bare_runs},
        "loader_parallel": parallel,
        "limiting_side": limiting,
        "loader_generate_share": round(gen_share, 3),
    }
    path = write_result(NAME, result, ratios)
    print(f"\nresult: {path}")
    print_ratios("insert path vs the limit", ratios)
    return {"ratios": ratios, "result": result}


if __name__ == "__main__":
    main()
