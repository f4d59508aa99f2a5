"""Benchmark 6 - each source kind against bare COPY of the same rows, and a batch's memory at N and 10 N rows.

The same N rows ("readings": a timestamp every second, a device, a float, a
nullable integer, a text status) are loaded into identical hypertables of one
fresh engine:

  * bare COPY: the rows pre-rendered as CSV, one ``COPY ... (FORMAT csv)`` per
    batch in a transaction with ``synchronous_commit = off`` - the engine's limit;
  * through ``tidemark.load.loader.load_batch`` (read, check, encode, spool, then
    DELETE + COPY + ledger in one transaction), from each source kind: a real
    PostgreSQL 15 table (sql), Parquet and CSV files, and Python returning
    tuples, dicts, a pyarrow Table and a pandas DataFrame.

Headline: rows/s of each kind over bare COPY's rows/s. Then the peak RSS of a
process that loads one batch of N rows and one of 10 N rows (Parquet, sql and a
Python generator): streaming keeps them within 1.25x of each other.

    python bench/bench_sources.py [--rows 400000] [--batches 4] [--rss-rows 100000]
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PLUGINS, REPO, UTC, Ratio, base_parser, fresh_side, log, print_ratios, write_result  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from psycopg import sql  # noqa: E402

from tidemark.connection import connect, factory  # noqa: E402
from tidemark.model.dataset import Column, Dataset, Hypertable  # noqa: E402
from tidemark.load.loader import load_batch  # noqa: E402
from tidemark.model.batch import Batch  # noqa: E402
from tidemark.timescale.schema import ensure_schema, table_ident  # noqa: E402
from tidemark.sources import FilesSource, PythonSource, SqlSource  # noqa: E402

NAME = "sources"
START = datetime(2024, 1, 1, tzinfo=UTC)
COLUMNS = (Column("t", "timestamptz"), Column("device", "text"), Column("value", "double precision"),
           Column("level", "integer", True), Column("status", "text"))
PGCTL = REPO / "embedded" / "pgctl"


def make_rows(n: int) -> pa.Table:
    k = pa.array(range(n), pa.int64())
    import pyarrow.compute as pc

    times = pc.cast(pc.add(pc.multiply(k, 1_000_000), int(START.timestamp() * 1_000_000)), pa.int64())
    return pa.table({
        "t": times.cast(pa.timestamp("us", "UTC")),
        "device": pc.binary_join_element_wise("dev-", pc.cast(pc.bit_wise_and(k, 7), pa.string()), ""),
        "value": pc.divide(pc.cast(pc.bit_wise_and(pc.multiply(k, 2654435761), 0xFFFF), pa.float64()), 7.0),
        "level": pa.array([None if i % 50 == 0 else i % 1000 for i in range(n)], pa.int32()),
        "status": pa.array(["ok" if i % 9 else "warn" for i in range(n)]),
    })


def windows(n: int, batches: int) -> list[Batch]:
    step = timedelta(seconds=-(-n // batches))
    return [Batch(i, START + i * step, START + (i + 1) * step) for i in range(batches)]


def table(schema: str, source: Any) -> Dataset:
    ht = Hypertable("readings", "t", COLUMNS, chunk_interval=timedelta(hours=6), segmentby=("device",),
                    schema=schema, source=source)
    return Dataset(f"bench_{schema}", (ht,))


def bare_copy(dsn: str, schema: str, data: pa.Table, batches: list[Batch]) -> float:
    ds = table(schema, PythonSource(lambda s, e: []))
    with connect(dsn) as conn:
        ensure_schema(conn, ds)
    payloads = []
    for b in batches:
        mask = pa.compute.and_(pa.compute.greater_equal(data["t"], pa.scalar(b.start, data["t"].type)),
                               pa.compute.less(data["t"], pa.scalar(b.end, data["t"].type)))
        buf = io.BytesIO()
        pacsv.write_csv(data.filter(mask), buf, pacsv.WriteOptions(include_header=False))
        payloads.append(buf.getvalue())
    cols = sql.SQL(", ").join(sql.Identifier(c.name) for c in COLUMNS)
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table_ident(ds.tables[0]), cols)
    t0 = time.perf_counter()
    with connect(dsn) as conn:
        for payload in payloads:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                with conn.cursor().copy(stmt) as cp:
                    cp.write(payload)
    return time.perf_counter() - t0


def through_loader(dsn: str, ds: Dataset, batches: list[Batch]) -> tuple[float, int]:
    with connect(dsn) as conn:
        ensure_schema(conn, ds)
    t0 = time.perf_counter()
    rows = sum(load_batch(factory(dsn), ds, b, "bench").total_rows for b in batches)
    return time.perf_counter() - t0, rows


class SourceDatabase:
    """A real PostgreSQL 15 holding the rows as a table, for the sql source."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="tidemark-bench-pg-"))
        self.base.chmod(0o755)
        self.env = {**os.environ, "TIDEMARK_PG_DATA": str(self.base / "pg")}

    def __enter__(self) -> str:
        done = subprocess.run([str(PGCTL), "start"], env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr}")
        return next(line.split("DSN: ")[1] for line in done.stdout.splitlines() if line.startswith("DSN: "))

    def __exit__(self, *exc: object) -> None:
        subprocess.run([str(PGCTL), "stop"], env=self.env, capture_output=True, timeout=120)
        shutil.rmtree(self.base, ignore_errors=True)


def rss_of_one_batch(kind: str, n: int, dsn: str, workdir: Path, source_dsn: str) -> float:
    """Peak RSS (MiB, sampled every 5 ms) of a fresh process while it loads one batch of n rows from ``kind``."""
    script = f"""
import sys, uuid
sys.path.insert(0, {str(PLUGINS)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
import os
os.environ["AIRFLOW_CONN_BENCH_SRC"] = {source_dsn!r}
import bench_sources as b
from tidemark.connection import factory
from tidemark.model.batch import Batch
from datetime import timedelta
n = {n}
kind = {kind!r}
if kind == "parquet":
    src = b.FilesSource({str(workdir)!r} + "/rss-" + str(n) + ".parquet", base_dir={str(workdir)!r})
elif kind == "sql":
    src = b.SqlSource("bench_src", table="rss_" + str(n))
else:
    def gen(s, e):
        t = s
        k = 0
        while t < e:
            yield (t, "dev-" + str(k % 8), k / 7, k % 1000, "ok")
            t += timedelta(seconds=1)
            k += 1
    src = b.PythonSource(gen)
ds = b.table("rss_" + kind + "_" + uuid.uuid4().hex[:6], src)
from tidemark.connection import connect
from tidemark.timescale.schema import ensure_schema
with connect({dsn!r}) as conn:
    ensure_schema(conn, ds)
import threading, time
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
peak = [0.0]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
before = rss()
watcher = threading.Thread(target=sample, daemon=True)
watcher.start()
b.load_batch(factory({dsn!r}), ds, Batch(0, b.START, b.START + timedelta(seconds=n)), "rss")
done.set(); watcher.join()
print(max(peak[0], rss()), before)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"rss run {kind} {n} failed:\n{done.stderr[-3000:]}")
    peak, before = map(float, done.stdout.split())
    return peak  # the whole process, imports included: what a worker's memory limit sees


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=400_000)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--rss-rows", type=int, default=100_000)
    args = p.parse_args(argv)
    n = args.rows // 4 if args.quick else args.rows
    rss_n = args.rss_rows // 4 if args.quick else args.rss_rows
    data = make_rows(n)
    batches = windows(n, args.batches)
    work = Path(tempfile.mkdtemp(prefix="tidemark-bench-files-"))
    results: dict[str, Any] = {"rows": n, "batches": args.batches, "kinds": {}}
    try:
        pq.write_table(data, work / "readings.parquet", row_group_size=50_000)
        csv_buf = io.BytesIO()
        pacsv.write_csv(data, csv_buf)
        (work / "readings.csv").write_bytes(csv_buf.getvalue())
        for m in (rss_n, 10 * rss_n):
            pq.write_table(make_rows(m), work / f"rss-{m}.parquet", row_group_size=50_000)
        py_rows = data.to_pylist()
        tuples = [tuple(r.values()) for r in py_rows]
        frame = data.to_pandas()

        def window_of(s: datetime, e: datetime, items: list[Any]) -> list[Any]:
            lo = int((s - START).total_seconds())
            hi = int((e - START).total_seconds())
            return items[lo:hi]

        def arrow_window(s: datetime, e: datetime) -> pa.Table:
            lo = int((s - START).total_seconds())
            return data.slice(lo, int((e - s).total_seconds()))

        with SourceDatabase() as source_dsn, fresh_side("sources", args.dsn) as side:
            os.environ["AIRFLOW_CONN_BENCH_SRC"] = source_dsn
            with connect(source_dsn) as src:
                for name, tbl in [("readings", data), (f"rss_{rss_n}", make_rows(rss_n)),
                                  (f"rss_{10 * rss_n}", make_rows(10 * rss_n))]:
                    src.execute(sql.SQL("CREATE TABLE {} (t timestamptz NOT NULL, device text, value double precision,"
                                        " level integer, status text)").format(sql.Identifier(name)))
                    buf = io.BytesIO()
                    pacsv.write_csv(tbl, buf, pacsv.WriteOptions(include_header=False))
                    with src.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(sql.Identifier(name))) as cp:
                        cp.write(buf.getvalue())
            kinds: dict[str, Any] = {
                "sql (PostgreSQL 15 table)": SqlSource("bench_src", table="readings"),
                "files: parquet": FilesSource(str(work / "readings.parquet"), base_dir=work),
                "files: csv": FilesSource(str(work / "readings.csv"), "csv", count=False, base_dir=work),
                "python: tuples": PythonSource(lambda s, e: iter(window_of(s, e, tuples))),
                "python: dicts": PythonSource(lambda s, e: iter(window_of(s, e, py_rows))),
                "python: pyarrow Table": PythonSource(arrow_window),
                "python: pandas DataFrame": PythonSource(
                    lambda s, e: frame.iloc[int((s - START).total_seconds()):int((e - START).total_seconds())]),
            }
            bare = [bare_copy(side.dsn, f"bare_a_{uuid.uuid4().hex[:6]}", data, batches)]
            log(f"bare COPY: {n / bare[0]:,.0f} rows/s")
            for label, source in kinds.items():
                seconds, rows = through_loader(side.dsn, table(f"k_{uuid.uuid4().hex[:6]}", source), batches)
                assert rows == n, f"{label}: loaded {rows} rows, expected {n}"
                results["kinds"][label] = {"seconds": round(seconds, 3), "rows_per_s": round(n / seconds)}
                log(f"{label:28s} {n / seconds:10,.0f} rows/s  ({seconds:.2f} s)")
            bare.append(bare_copy(side.dsn, f"bare_b_{uuid.uuid4().hex[:6]}", data, batches))
            limit = n / (sum(bare) / len(bare))
            results["bare_copy_rows_per_s"] = round(limit)
            log(f"bare COPY (mean of before/after): {limit:,.0f} rows/s")
            rss: dict[str, dict[str, float]] = {}
            for kind in ("parquet", "sql", "python"):
                small = rss_of_one_batch(kind, rss_n, side.dsn, work, source_dsn)
                large = rss_of_one_batch(kind, 10 * rss_n, side.dsn, work, source_dsn)
                rss[kind] = {"n_mib": round(small, 1), "10n_mib": round(large, 1), "ratio": round(large / small, 3)}
                log(f"peak RSS, one batch from {kind}: {small:.0f} MiB at {rss_n:,} rows, {large:.0f} MiB at "
                    f"{10 * rss_n:,} rows ({large / small:.2f}x)")
            results["rss"] = rss
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = [
        Ratio(f"sources: {label} / bare COPY", round(v["rows_per_s"] / results["bare_copy_rows_per_s"], 3), None,
              note=f"{v['rows_per_s']:,} vs {results['bare_copy_rows_per_s']:,} rows/s")
        for label, v in results["kinds"].items()
    ] + [
        Ratio(f"sources: peak RSS of a batch, 10N / N ({kind})", v["ratio"], "<= 1.25",
              note=f"{v['n_mib']} vs {v['10n_mib']} MiB at {rss_n:,} / {10 * rss_n:,} rows")
        for kind, v in results["rss"].items()
    ]
    write_result(NAME, results, ratios)
    print_ratios("each source kind vs bare COPY; a batch's memory at N and 10 N rows", ratios)
    return {"ratios": ratios, **results}


if __name__ == "__main__":
    main()
