"""Benchmark 4 - scaling: range R vs 2R, planning 1,000 batches, and the sensor's per-poke cost.

1. Runtime of the plain library loop (``common.run_library_loop``: plan, insert
   every batch, poke, finalize) for a range R and for 2R, each run into a fresh
   database, alternating R and 2R ``--range-repeat`` times; medians compared.
   Goal: t(2R) <= 2.1 x t(R).
2. ``tidemark.flows.plan.plan_batches`` for 1,000 batches (1-hour windows), alone
   and with every other window already loaded (the ledger's skip logic);
   median of ``--repeat`` runs. Goal: < 1 s.
3. ``backfill.poke`` with n = 50, 200, 800 planned batches over the same
   range (80-, 20- and 5-minute batches over 66 h 40 min, so the chunks and
   their compression state are identical and only n varies), most of them done: the watermark is
   persisted at n - 4, two of the last four batches are finished beyond a gap,
   every chunk behind the watermark exists and is compressed. Median of
   ``--repeat`` pokes per n; shows whether a poke re-reads everything (it
   should cost O(batches in flight), not O(n)).

    python bench/bench_scaling.py [--days 1] [--batch-hours 3] [--repeat 7] [--dsn URL]
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    UTC, Ratio, base_parser, fmt_stats, fresh_side, log, print_ratios, run_library_loop, stats, write_result,
)

from tidemark.flows import backfill, progressive  # noqa: E402
from tidemark.timescale import compressor
from tidemark.state import progress, runs
from tidemark.connection import factory  # noqa: E402
from tidemark.load.loader import replace_window, staged_window  # noqa: E402
from tidemark.model.batch import Batch  # noqa: E402
from tidemark.flows.plan import plan_batches

START = datetime(2024, 1, 1, tzinfo=UTC)
NAME = "scaling"
POKE_SPAN = timedelta(minutes=4000)  # 66 h 40 min: 50 x 80 min, 200 x 20 min, 800 x 5 min
# Starting at 05:00 puts the watermark (n - 4 batches done) inside the last 6-hour chunk for every n,
# so the compressed and uncompressed chunks are the same whatever n is: only the plan's size varies.
POKE_START = START + timedelta(hours=5)
POKE_NS = (50, 200, 800)


# ------------------------------------------------------------------ 1. R vs 2R


def range_scaling(args: Any) -> dict[str, Any]:
    """R and 2R alternately, ``--range-repeat`` times each, a fresh database per run; medians compared."""
    out: dict[str, Any] = {"R": {"runs": []}, "2R": {"runs": []}}
    step = f"{args.batch_hours:g} hours"
    for k in range(args.range_repeat):
        for label, days in (("R", args.days), ("2R", 2 * args.days)):
            with fresh_side(f"scaling-{label}", args.dsn) as side:
                r = run_library_loop(side.dsn, side.name, START, START + timedelta(days=days), step,
                                     f"bench-scale-{label}")
                r["side"] = side.info
                out[label]["runs"].append(r)
                log(f"range {label} ({days:g} days, {step} batches) run {k + 1}/{args.range_repeat}: "
                    f"{r['wall_seconds']:.1f} s")
    for label, days in (("R", args.days), ("2R", 2 * args.days)):
        runs_ = out[label]["runs"]
        median_run = sorted(runs_, key=lambda x: x["wall_seconds"])[len(runs_) // 2]
        out[label].update({
            "days": days,
            "wall": stats([x["wall_seconds"] for x in runs_]),
            "wall_seconds": statistics.median(x["wall_seconds"] for x in runs_),
            "batches": median_run["batches"],
            "rows": median_run["rows"],
            "median_run": {k: median_run[k] for k in ("insert_seconds", "pokes", "poke_seconds", "finalize_seconds")},
        })
    return out


# ------------------------------------------------------------------ 2. planning


def planning(repeat: int) -> dict[str, Any]:
    end = START + timedelta(hours=1000)
    plan_batches(START, end, "1 hour")  # warm imports and caches
    plain = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        p = plan_batches(START, end, "1 hour")
        plain.append(time.perf_counter() - t0)
    assert len(p.batches) == 1000
    loaded = [(START + timedelta(hours=2 * i), START + timedelta(hours=2 * i + 1)) for i in range(500)]
    with_loaded = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        p = plan_batches(START, end, "1 hour", loaded=loaded)
        with_loaded.append(time.perf_counter() - t0)
    assert len(p.batches) == 500 and len(p.skipped) == 500
    # What plan_run returns through XCom: the batches as dicts.
    to_dicts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        [b.to_dict() for b in plan_batches(START, end, "1 hour").batches]
        to_dicts.append(time.perf_counter() - t0)
    return {"plain": stats(plain), "half_loaded": stats(with_loaded), "with_to_dict": stats(to_dicts)}


# ------------------------------------------------------------------ 3. poke cost vs n


def _make_chunks(connect: Any, ds: Any, start: datetime, end: datetime) -> int:
    """One minute of real rows at the start of every 6-hour chunk (no ledger entry, so planning is unaffected)."""
    chunk = ds.tables[0].chunk_interval
    t = start
    n = 0
    with connect() as conn:
        while t < end:
            b = Batch(0, t, t + timedelta(minutes=1))
            with staged_window(ds, b) as staged, conn.transaction():
                replace_window(conn, ds, b, staged)
            t += chunk
            n += 1
    return n


def poke_cost(args: Any) -> dict[str, Any]:
    end = POKE_START + POKE_SPAN
    minutes = int(POKE_SPAN.total_seconds() // 60)
    out: dict[str, Any] = {"span": f"{minutes // 60} h {minutes % 60} min", "per_n": {}}
    with fresh_side("scaling-poke", args.dsn) as side:
        connect = factory(side.dsn)
        ds = side.dataset
        chunk_starts = _make_chunks(connect, ds, POKE_START, end)
        out["side"] = side.info
        out["chunks_per_table"] = chunk_starts
        for n in POKE_NS:
            step = POKE_SPAN / n
            request = backfill.BackfillRequest.from_params({
                "dataset": side.name, "start": POKE_START.isoformat(), "end": end.isoformat(),
                "batch_interval": f"{int(step.total_seconds() // 60)} minutes",
            })
            run_id = f"bench-poke-{n}"
            planned = backfill.plan_run(connect, request, run_id)
            summary, batches = planned["plan"], planned["batches"]
            assert len(batches) == n, (n, len(batches))
            done = n - 4
            wm_time = Batch.from_dict(batches[done - 1]).end
            states: dict[int, str | None] = {i: "success" for i in range(done)}
            states.update({n - 4: "running", n - 3: "success", n - 2: "success", n - 1: "running"})
            results = {i: {**batches[i], "rows": {}} for i in range(n) if states.get(i) == "success"}
            with connect() as conn:
                # Every chunk behind the watermark is already compressed, as after a real run's pokes.
                compressor.compress_behind(conn, ds, POKE_START, wm_time, run_id=run_id)
                progress.record_poke(conn, run_id, watermark_batches=done, watermark_time=wm_time,
                                     backlog_chunks=0, backlog_bytes=0, remaining_chunks=0, remaining_bytes=0)
            fetched: list[int] = []

            def fetch(idx: list[int]) -> dict[int, Any]:
                fetched.append(len(idx))
                return {i: results.get(i) for i in idx}

            progressive.poke(connect, summary, states)  # warm-up
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                outcome = progressive.poke(connect, summary, states)
                times.append(time.perf_counter() - t0)
            assert outcome.watermark.completed == done, outcome.watermark
            # The Python side alone: what poke does with the plan before touching the database.
            py = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                [Batch.from_dict(b) for b in batches]
                py.append(time.perf_counter() - t0)
            out["per_n"][n] = {
                "batch_interval": request.batch_interval.total_seconds() / 60,
                "poke_seconds": stats(times),
                "results_fetched_per_poke": max(fetched, default=0),  # the watermark comes from the ledger: none
                "parse_plan_seconds": stats(py),
                "backlog_after": outcome.backlog_chunks,
            }
            with connect() as conn:
                runs.finish(conn, run_id, "succeeded")
            log(f"poke n={n}: {fmt_stats(out['per_n'][n]['poke_seconds'])}, fetched {max(fetched, default=0)} results per poke")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--days", type=float, default=1.0, help="range R in days (default 1; 2R = 2 days)")
    p.add_argument("--batch-hours", type=float, default=3.0)
    p.add_argument("--repeat", type=int, default=7, help="runs per short measurement (median reported)")
    p.add_argument("--range-repeat", type=int, default=3, help="runs of R and of 2R (alternating; medians compared)")
    args = p.parse_args(argv)
    if args.quick:
        args.days = min(args.days, 0.5)
        args.repeat = min(args.repeat, 3)
        args.range_repeat = 1

    log("planning 1,000 batches")
    plan = planning(max(args.repeat, 5))
    log(f"  {fmt_stats(plan['plain'], digits=4)}")
    poke = poke_cost(args)
    ranges = range_scaling(args)

    r, r2 = ranges["R"], ranges["2R"]
    range_ratio = r2["wall_seconds"] / r["wall_seconds"]
    per_n = poke["per_n"]
    t50 = per_n[POKE_NS[0]]["poke_seconds"]["median"]
    t800 = per_n[POKE_NS[-1]]["poke_seconds"]["median"]

    print(f"\n1. range R = {r['days']:g} days vs 2R = {r2['days']:g} days ({args.batch_hours:g} h batches), library loop:")
    for label, x in (("R", r), ("2R", r2)):
        m = x["median_run"]
        print(f"   {label:<3} {x['batches']:>3} batches {x['rows']:>9,} rows  wall {fmt_stats(x['wall'], digits=1)}")
        print(f"       median run: insert {m['insert_seconds']:.1f} s, {m['pokes']} pokes {m['poke_seconds']:.1f} s, "
              f"finalize {m['finalize_seconds']:.1f} s")
    print("2. plan_batches, 1,000 one-hour batches:")
    print(f"   plain:               {fmt_stats(plan['plain'], digits=4)}")
    print(f"   half already loaded: {fmt_stats(plan['half_loaded'], digits=4)}")
    print(f"   plus to_dict():      {fmt_stats(plan['with_to_dict'], digits=4)}")
    print(f"3. backfill.poke, same {poke['span']} range ({poke['chunks_per_table']} chunks per table), "
          "watermark at n-4:")
    for n, x in per_n.items():
        print(f"   n={n:<4} ({x['batch_interval']:g}-min batches) {fmt_stats(x['poke_seconds'])}; "
              f"results fetched per poke: {x['results_fetched_per_poke']}; "
              f"parsing the plan: {x['parse_plan_seconds']['median'] * 1000:.1f} ms")
    print(f"   poke(800)/poke(50) = {t800 / t50:.2f}x for 16x the batches")

    ratios = [
        Ratio("scaling: t(2R) / t(R)", round(range_ratio, 3), "<= 2.1",
              note=f"medians of {args.range_repeat}: {r2['wall_seconds']:.1f} s vs {r['wall_seconds']:.1f} s"),
        Ratio("scaling: plan_batches(1,000) median", round(plan["plain"]["median"], 5), "< 1", unit="s",
              note=f"half loaded: {plan['half_loaded']['median']:.4f} s"),
        Ratio("scaling: poke(n=800) / poke(n=50)", round(t800 / t50, 3), "< 16",
              note=f"{t800:.3f} s vs {t50:.3f} s; < 16x means not linear in n"),
    ]
    result = {"params": vars(args) | {"dsn": bool(args.dsn)}, "range": ranges, "planning": plan, "poke": poke}
    path = write_result(NAME, result, ratios)
    print(f"result: {path}")
    print_ratios("scaling", ratios)
    return {"ratios": ratios, "result": result}


if __name__ == "__main__":
    main()
