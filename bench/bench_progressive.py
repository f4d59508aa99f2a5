"""Benchmark 2 - progressive compression vs compressing everything at the end.

The same backfill (dataset ``ledgers``, ``--days`` days from 2024-01-01 in
``--batch-hours`` batches; the hypertables have 6-hour chunks) is driven with
the library, not Airflow, in a fresh database per strategy:

  (a) progressive: P worker threads load batches in index order through
      ``backfill.insert_batch`` (each opening its own connections via
      ``tidemark.connection.factory``), with the DAG's backpressure
      (``progressive.wait_reason``, at most P batches ahead of the watermark), while
      a poker thread calls ``backfill.poke`` every ``--poke-interval`` seconds
      with the states and results so far; then ``backfill.finalize``.
  (b) compress at end: the same loaders (no poker, no backpressure), then
      ``compressor.final_pass`` over the whole range, then ``backfill.finalize``.

A sampler thread records the uncompressed backlog every ``--sample-interval``
seconds with one cheap query (``timescaledb_information.chunks`` +
``pg_total_relation_size``: the same count and bytes as
``compressor.backlog``, which costs one ``chunks_detailed_size`` call per
uncompressed chunk - too heavy to repeat 4x a second on the embedded engine,
which runs one client at a time).

Reported per strategy: total wall time, the tail (last batch committed ->
every chunk compressed; from the database's own timestamps, with the
client-side view beside it) and the peak uncompressed backlog during the load.
Goals: tail(a) <= 0.1 x tail(b); peak uncompressed chunks per hypertable in (a)
<= P + 2. Plot: bench/results/progressive_vs_end.png.

    python bench/bench_progressive.py [--days 4] [--batch-hours 3] [--parallel 4] [--dsn URL]
"""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from progressive_plot import plot  # noqa: E402
from common import (  # noqa: E402
    RESULTS, UTC, Ratio, Side, base_parser, fresh_side, log, print_ratios, write_result,
)

from tidemark.flows import backfill, progressive  # noqa: E402
from tidemark.timescale import compressor
from tidemark.connection import connect as open_connection  # noqa: E402
from tidemark.connection import factory  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)
NAME = "progressive_vs_end"

_SAMPLE_SQL = (
    "SELECT hypertable_name, count(*),"
    " coalesce(sum(pg_total_relation_size(format('%%I.%%I', chunk_schema, chunk_name)::regclass)), 0)"
    " FROM timescaledb_information.chunks"
    " WHERE hypertable_schema = %s AND hypertable_name = ANY(%s) AND NOT is_compressed"
    " AND range_end > %s AND range_start < %s GROUP BY 1"
)


class Sampler(threading.Thread):
    """Uncompressed chunks (per hypertable) and bytes in the window, every ``interval`` seconds."""

    def __init__(self, dsn: str, side: Side, start: datetime, end: datetime, t0: float, interval: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.dsn, self.side, self.start_at, self.end_at = dsn, side, start, end
        self.t0, self.interval = t0, interval
        self.samples: list[dict[str, Any]] = []
        self.errors = 0
        self.query_seconds: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        tables = [t.name for t in self.side.dataset.tables]
        schema = self.side.dataset.tables[0].schema
        with open_connection(self.dsn) as conn:
            while not self._halt.is_set():
                q0 = time.perf_counter()
                try:
                    rows = conn.execute(_SAMPLE_SQL, (schema, tables, self.start_at, self.end_at)).fetchall()
                except Exception:  # noqa: BLE001 - a chunk dropped mid-query on a real server: skip the sample
                    self.errors += 1
                    rows = None
                q1 = time.perf_counter()
                if rows is not None:
                    per_table = {name: 0 for name in tables}
                    total_bytes = 0
                    for name, n, b in rows:
                        per_table[name] = int(n)
                        total_bytes += int(b)
                    self.query_seconds.append(q1 - q0)
                    self.samples.append({"t": round(q1 - self.t0, 3), "chunks": sum(per_table.values()),
                                         "per_table": per_table, "bytes": total_bytes})
                self._halt.wait(max(0.0, self.interval - (time.perf_counter() - q0)))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)


def run_strategy(side: Side, strategy: str, args: Any) -> dict[str, Any]:
    assert strategy in ("progressive", "at_end")
    connect = factory(side.dsn)
    end = START + timedelta(days=args.days)
    request = backfill.BackfillRequest.from_params({
        "dataset": side.name, "start": START.isoformat(), "end": end.isoformat(),
        "batch_interval": f"{args.batch_hours:g} hours",
    })
    run_id = f"bench-{strategy}"
    P = args.parallel
    max_ahead = P if args.max_ahead is None else args.max_ahead  # the DAG's default: TIDEMARK_MAX_BATCHES_AHEAD = P
    t0 = time.perf_counter()

    def now() -> float:
        return round(time.perf_counter() - t0, 3)

    sampler = Sampler(side.dsn, side, START, end, t0, args.sample_interval)
    sampler.start()
    planned = backfill.plan_run(connect, request, run_id)
    summary, batches = planned["plan"], planned["batches"]
    lock = threading.Lock()
    states: dict[int, str] = {}
    results: dict[int, dict[str, Any]] = {}
    done_events: list[dict[str, Any]] = []
    wm_events: list[dict[str, Any]] = []
    poke_seconds: list[float] = []
    errors: list[BaseException] = []
    waits = {"count": 0, "seconds": 0.0}
    queue = list(reversed(batches))
    is_progressive = strategy == "progressive"

    def worker() -> None:
        try:
            while True:
                with lock:
                    if not queue or errors:
                        return
                    b = queue.pop()
                if is_progressive:
                    w0 = time.perf_counter()
                    while progressive.wait_reason(connect, summary, b, max_ahead=max_ahead, sibling_failed=False,
                                               stale_after=timedelta(seconds=60)):
                        waits["count"] += 1
                        time.sleep(args.poke_interval / 2)
                    waits["seconds"] += time.perf_counter() - w0
                r = backfill.insert_batch(connect, summary, b, compress=is_progressive)
                with lock:
                    results[b["index"]] = r
                    states[b["index"]] = "success"
                    done_events.append({"t": now(), "index": b["index"], "rows": sum(r["rows"].values()),
                                        "seconds": r["seconds"], "generate_seconds": r["generate_seconds"],
                                        "db_seconds": r["db_seconds"]})
        except BaseException as exc:  # noqa: BLE001 - surfaced after join
            errors.append(exc)

    poke_done = {"t": None}

    def poker() -> None:
        last = 0
        try:
            while not errors:
                with lock:
                    snapshot = dict(states)
                p0 = time.perf_counter()
                outcome = progressive.poke(connect, summary, snapshot)
                poke_seconds.append(time.perf_counter() - p0)
                if outcome.watermark.completed != last or outcome.compressed_now:
                    wm_events.append({"t": now(), "completed": outcome.watermark.completed,
                                      "watermark": outcome.watermark.time.isoformat(),
                                      "compressed_now": outcome.compressed_now,
                                      "backlog_chunks_after": outcome.backlog_chunks})
                    last = outcome.watermark.completed
                if outcome.done:
                    poke_done["t"] = now()
                    return
                with lock:
                    all_in = len(states) == len(batches)
                if all_in and time.perf_counter() - t0 > (done_events[-1]["t"] if done_events else 0) + 300:
                    raise RuntimeError("the watermark did not complete within 300 s of the last batch")
                time.sleep(args.poke_interval)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"loader-{i}") for i in range(P)]
    if is_progressive:
        threads.append(threading.Thread(target=poker, name="poker"))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sampler.stop()
        raise errors[0]
    t_last_batch = max(e["t"] for e in done_events)
    final_pass_seconds = None
    if is_progressive:
        t_compressed_client = poke_done["t"]
    else:
        f0 = time.perf_counter()
        with connect() as conn:
            res, _ = compressor.final_pass(conn, side.dataset, START, end, run_id=run_id)
        final_pass_seconds = round(time.perf_counter() - f0, 3)
        bad = [r for r in res if not r.ok]
        if bad:
            raise RuntimeError(f"compression failed: {bad[0].error}")
        t_compressed_client = now()
    f0 = time.perf_counter()
    report = backfill.finalize(connect, summary, states, results)
    finalize_seconds = round(time.perf_counter() - f0, 3)
    wall = now()
    sampler.stop()

    with connect() as conn:
        last_commit, last_compress = conn.execute(
            "SELECT (SELECT max(committed_at) FROM tidemark.batch_ledger WHERE run_id = %s),"
            " (SELECT max(compressed_at) FROM tidemark.compression_log WHERE run_id = %s)",
            (run_id, run_id),
        ).fetchone()
        chunks = compressor.list_chunks(conn, side.dataset, START, end)
    if not all(c.is_compressed for c in chunks):
        raise RuntimeError(f"{strategy}: not every chunk is compressed at the end")
    tail_db = (last_compress - last_commit).total_seconds()

    # Peak over the whole run (load and tail): for compress-at-end the backlog peaks just after the last batch.
    samples = sampler.samples
    peak_chunks = max((s["chunks"] for s in samples), default=0)
    peak_per_table = max((max(s["per_table"].values()) for s in samples), default=0)
    peak_bytes = max((s["bytes"] for s in samples), default=0)
    zero_after = next((s["t"] for s in sampler.samples if s["t"] >= t_last_batch and s["chunks"] == 0), None)
    rows = sum(e["rows"] for e in done_events)
    return {
        "strategy": strategy,
        "side": side.info,
        "batches": len(batches),
        "chunks": len(chunks),
        "rows": rows,
        "wall_seconds": wall,
        "load_seconds": t_last_batch,
        "rows_per_s_load": round(rows / t_last_batch) if t_last_batch else None,
        "tail_seconds": round(tail_db, 3),
        "tail_seconds_client": round(t_compressed_client - t_last_batch, 3),
        "tail_seconds_sampler": round(zero_after - t_last_batch, 3) if zero_after is not None else None,
        "final_pass_seconds": final_pass_seconds,
        "finalize_seconds": finalize_seconds,
        "peak_uncompressed_chunks": peak_chunks,
        "peak_uncompressed_chunks_per_hypertable": peak_per_table,
        "peak_uncompressed_bytes": peak_bytes,
        "library_peak_backlog": report.get("peak_uncompressed_backlog"),
        "report_chunks": report.get("chunks"),
        "report_bytes": report.get("bytes"),
        "report_tail_seconds": report.get("seconds_from_last_batch_to_fully_compressed"),
        "backpressure_waits": {"count": waits["count"], "seconds": round(waits["seconds"], 2)},
        "pokes": len(poke_seconds),
        "poke_seconds": {"median": round(sorted(poke_seconds)[len(poke_seconds) // 2], 3) if poke_seconds else None,
                         "max": round(max(poke_seconds), 3) if poke_seconds else None},
        "sampler": {"samples": len(sampler.samples), "errors": sampler.errors,
                    "median_query_seconds": round(sorted(sampler.query_seconds)[len(sampler.query_seconds) // 2], 4)
                    if sampler.query_seconds else None},
        "timeline": {
            "samples": sampler.samples,
            "batch_done": sorted(done_events, key=lambda e: e["t"]),
            "watermark": wm_events,
            "last_batch_t": t_last_batch,
            "compressed_t": t_compressed_client,
            "end_t": wall,
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--days", type=float, default=4.0, help="days to backfill (default 4)")
    p.add_argument("--batch-hours", type=float, default=3.0, help="hours per batch (default 3)")
    p.add_argument("--parallel", type=int, default=4, help="loader threads P (default 4)")
    p.add_argument("--max-ahead", type=int, default=None,
                   help="backpressure for (a): batches allowed beyond the watermark (default P, as the DAG; 0 = none)")
    p.add_argument("--poke-interval", type=float, default=0.5, help="seconds between pokes (default 0.5)")
    p.add_argument("--sample-interval", type=float, default=0.25, help="seconds between backlog samples (default 0.25)")
    p.add_argument("--replot", action="store_true", help="only redraw the PNG from bench/results/progressive_vs_end.json")
    args = p.parse_args(argv)
    if args.replot:
        import json
        from types import SimpleNamespace

        saved = json.loads((RESULTS / f"{NAME}.json").read_text())
        print(plot(saved["runs"], RESULTS / "progressive_vs_end.png", SimpleNamespace(**saved["params"])))
        return {"ratios": [], "result": saved}
    if args.quick:
        args.days = min(args.days, 2.0)
    # Compressing while loading is the classic mode's question: direct COPY writes compressed anyway.
    # Restored afterwards: run_all runs the other benchmarks in this same process.
    saved_mode = os.environ.get("TIDEMARK_DIRECT_COMPRESS")
    os.environ["TIDEMARK_DIRECT_COMPRESS"] = "off"
    try:
        return _compare(args)
    finally:
        if saved_mode is None:
            os.environ.pop("TIDEMARK_DIRECT_COMPRESS", None)
        else:
            os.environ["TIDEMARK_DIRECT_COMPRESS"] = saved_mode


def _compare(args: Any) -> dict[str, Any]:
    log(f"progressive vs end: {args.days:g} days in {args.batch_hours:g} h batches, P={args.parallel}")
    runs: dict[str, dict[str, Any]] = {}
    for strategy in ("progressive", "at_end"):
        with fresh_side(f"prog-{strategy}", args.dsn) as side:
            log(f"{strategy}: loading into {side.info['database']}")
            runs[strategy] = run_strategy(side, strategy, args)
            r = runs[strategy]
            log(f"{strategy}: wall {r['wall_seconds']:.1f} s, tail {r['tail_seconds']:.2f} s, "
                f"peak {r['peak_uncompressed_chunks']} chunks")
    a, b = runs["progressive"], runs["at_end"]
    png = plot(runs, RESULTS / "progressive_vs_end.png", args)

    print(f"\n{a['rows']:,} rows, {a['batches']} batches, {a['chunks']} chunks per strategy; P = {args.parallel}")
    print(f"{'':<34}{'(a) progressive':>18}{'(b) compress at end':>22}")
    for label, key, f in [
        ("total wall time (s)", "wall_seconds", "{:.1f}"),
        ("load phase (s)", "load_seconds", "{:.1f}"),
        ("tail: last batch -> compressed (s)", "tail_seconds", "{:.2f}"),
        ("  tail, client clock (s)", "tail_seconds_client", "{:.2f}"),
        ("  tail, backlog sampler (s)", "tail_seconds_sampler", "{}"),
        ("finalize (s)", "finalize_seconds", "{:.2f}"),
        ("peak uncompressed chunks (all)", "peak_uncompressed_chunks", "{}"),
        ("peak uncompressed chunks / table", "peak_uncompressed_chunks_per_hypertable", "{}"),
        ("peak uncompressed MiB", "peak_uncompressed_bytes", "mib"),
        ("load rows/s", "rows_per_s_load", "{:,}"),
    ]:
        def cell(r: dict[str, Any]) -> str:
            v = r[key]
            if v is None:
                return "n/a"
            return f"{v / 1048576:.1f}" if f == "mib" else f.format(v)
        print(f"{label:<34}{cell(a):>18}{cell(b):>22}")
    print(f"(a) pokes: {a['pokes']} (median {a['poke_seconds']['median']} s, max {a['poke_seconds']['max']} s); "
          f"backpressure waits: {a['backpressure_waits']['count']} ({a['backpressure_waits']['seconds']} s of worker time); "
          f"library's own peak: {a['library_peak_backlog']}")
    if png:
        print(f"plot: {png}")

    tail_ratio = a["tail_seconds"] / b["tail_seconds"] if b["tail_seconds"] > 0 else None
    ratios = [
        Ratio("progressive: tail / compress-at-end tail", round(tail_ratio, 3) if tail_ratio is not None else None,
              "<= 0.1", note=f"{a['tail_seconds']:.2f} s vs {b['tail_seconds']:.2f} s"),
        Ratio("progressive: peak uncompressed chunks/table", a["peak_uncompressed_chunks_per_hypertable"],
              f"<= {args.parallel + 2}", unit="chunks",
              note=f"P={args.parallel}; at end: {b['peak_uncompressed_chunks_per_hypertable']}/table"),
        Ratio("S3 progressive: wall / compress-at-end wall", round(a["wall_seconds"] / b["wall_seconds"], 3), "<= 1.0",
              note=f"{a['wall_seconds']:.1f} s vs {b['wall_seconds']:.1f} s, classic COPY; load {os.getloadavg()[0]:.2f}"),
    ]
    result = {"params": vars(args) | {"dsn": bool(args.dsn)}, "runs": runs, "plot": str(png) if png else None}
    path = write_result(NAME, result, ratios)
    print(f"result: {path}")
    print_ratios("progressive vs compress-at-end", ratios)
    return {"ratios": ratios, "result": result}


if __name__ == "__main__":
    main()
