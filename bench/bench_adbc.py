"""ADBC's Arrow ingest against Tidemark's own binary COPY encoder (issue 21).

Both sides get the same prepared Arrow data (the demo's ``ledgers`` tables,
cast to the hypertables' columns by ``tidemark.load.arrow_data.prepare``, made
before any timing) and write it the way a batch does: one transaction per
batch window, ``SET LOCAL synchronous_commit = off``, one binary ``COPY`` per
table, commit.

  tidemark  ``tidemark.load.copy_binary.write_binary`` frames the rows (Arrow
            kernels and numpy), psycopg streams them: ``COPY ... (FORMAT binary)``.
  adbc      ``adbc_driver_postgresql`` (binary COPY written in C):
            ``cursor.adbc_ingest(table, arrow, mode="append")`` in the same
            kind of transaction (ADBC's own libpq connection).

Each side's time is encoding + COPY + commit (ADBC encodes inside its call);
the encoder's share is also timed alone. Rounds alternate the sides on one
database (tables truncated in between), ``--direct`` also sets
``timescaledb.enable_direct_compress_copy`` on both. After the timed rounds
each side's rows are compared value for value (an md5 over every table, in
order). Ratio: tidemark seconds / adbc seconds (below 1: Tidemark's is faster).

    python bench/bench_adbc.py [--windows 8] [--hours 6] [--rounds 3] [--direct] [--dsn URL]
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import UTC, Ratio, base_parser, fresh_side, log, print_ratios, stats, write_result  # noqa: E402

from psycopg import sql  # noqa: E402

from tidemark.connection import connect  # noqa: E402
from tidemark.demo.stream import LedgerSource  # noqa: E402
from tidemark.load import arrow_data  # noqa: E402
from tidemark.load.copy_binary import BINARY_HEADER, BINARY_TRAILER, write_binary  # noqa: E402
from tidemark.load.table_window import TableWindow  # noqa: E402
from tidemark.timescale.schema import table_ident  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)
NAME = "adbc"


def prepared_windows(ds: Any, windows: int, hours: int) -> list[dict[str, Any]]:
    """Per window, per table: the prepared Arrow table both sides write (not timed)."""
    import pyarrow as pa

    source = LedgerSource()
    out = []
    for i in range(windows):
        lo, hi = START + timedelta(hours=hours * i), START + timedelta(hours=hours * (i + 1))
        per_table = {}
        for t in ds.tables:
            win = TableWindow(ds.name, t, lo, hi)
            batches = [arrow_data.prepare(win, b, "bench") for b in source.record_batches(t.name, lo, hi)]
            per_table[t.name] = pa.Table.from_batches([b for b in batches if b is not None])
        out.append(per_table)
    return out


def copy_tidemark(conn: Any, ds: Any, window: dict[str, Any], direct: bool) -> float:
    """One window the loader's way; returns the seconds spent framing rows (part of the side's time)."""
    encode_s = 0.0
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = off")
        if direct:
            conn.execute("SET LOCAL timescaledb.enable_direct_compress_copy = on")
        for t in ds.tables:
            data = window[t.name]
            kinds = [c.parsed for c in t.cols]
            e0 = time.perf_counter()
            buf = io.BytesIO()
            buf.write(BINARY_HEADER)
            for b in data.to_batches():
                write_binary(b, kinds, buf)
            buf.write(BINARY_TRAILER)
            encode_s += time.perf_counter() - e0
            stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
                table_ident(t), sql.SQL(", ").join(sql.Identifier(c) for c in t.column_names))
            with conn.cursor().copy(stmt) as cp:
                cp.write(buf.getbuffer())
    return encode_s


def copy_adbc(conn: Any, ds: Any, window: dict[str, Any], direct: bool) -> None:
    with conn.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        if direct:
            cur.execute("SET LOCAL timescaledb.enable_direct_compress_copy = on")
        for t in ds.tables:
            cur.adbc_ingest(t.name, window[t.name], mode="append", db_schema_name=t.schema)
    conn.commit()


def checksum(conn: Any, ds: Any) -> dict[str, str]:
    out = {}
    for t in ds.tables:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in t.column_names)
        q = sql.SQL("SELECT count(*) || ':' || md5(string_agg(r::text, '|' ORDER BY r::text))"
                    " FROM (SELECT {} FROM {}) r").format(cols, table_ident(t))
        out[t.name] = conn.execute(q).fetchone()[0]
    return out


def truncate(conn: Any, ds: Any) -> None:
    for t in ds.tables:
        conn.execute(sql.SQL("TRUNCATE {}").format(table_ident(t)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import adbc_driver_postgresql.dbapi as adbc

    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--hours", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--direct", action="store_true", help="direct-to-columnstore COPY on both sides")
    args = p.parse_args(argv)
    if args.quick:
        args.windows, args.rounds = 2, 1
    times: dict[str, list[float]] = {"tidemark": [], "adbc": []}
    encode: list[float] = []
    with fresh_side("adbc", args.dsn) as side:
        ds = side.dataset
        log(f"preparing {args.windows} windows of {args.hours} h (Arrow, untimed)")
        windows = prepared_windows(ds, args.windows, args.hours)
        rows = sum(t.num_rows for w in windows for t in w.values())
        sums: dict[str, dict[str, str]] = {}
        with connect(side.dsn) as conn, adbc.connect(side.dsn.split("?")[0]) as aconn:
            server = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0]
            for r in range(args.rounds):
                for label in ("tidemark", "adbc") if r % 2 == 0 else ("adbc", "tidemark"):
                    truncate(conn, ds)
                    t0 = time.perf_counter()
                    e = 0.0
                    for w in windows:
                        if label == "tidemark":
                            e += copy_tidemark(conn, ds, w, args.direct)
                        else:
                            copy_adbc(aconn, ds, w, args.direct)
                    times[label].append(time.perf_counter() - t0)
                    if label == "tidemark":
                        encode.append(e)
                    log(f"round {r + 1} {label}: {times[label][-1]:.2f} s")
                    sums[label] = checksum(conn, ds)
    same = sums["tidemark"] == sums["adbc"]
    result = {"params": vars(args) | {"dsn": bool(args.dsn)}, "rows": rows, "server": server,
              "database": side.info.get("database"), "tidemark_seconds": stats(times["tidemark"]),
              "adbc_seconds": stats(times["adbc"]), "tidemark_encode_seconds": stats(encode),
              "same_rows": same, "checksums": sums}
    med_t, med_a = statistics.median(times["tidemark"]), statistics.median(times["adbc"])
    print(f"{rows:,} rows in {args.windows} transactions, TimescaleDB {server}, direct={args.direct}")
    print(f"  tidemark: median {med_t:.2f} s ({rows / med_t:,.0f} rows/s), of which framing {statistics.median(encode):.2f} s")
    print(f"  adbc:     median {med_a:.2f} s ({rows / med_a:,.0f} rows/s)")
    print(f"  same rows: {same}")
    ratios = [Ratio("Tidemark binary COPY / ADBC ingest (seconds)", round(med_t / med_a, 3), None,
                    note=f"{med_t:.2f} s vs {med_a:.2f} s, {rows:,} rows, same rows {same}")]
    write_result(NAME + ("_direct" if args.direct else "") + ("_dsn" if args.dsn else ""), result, ratios)
    print_ratios("ADBC", ratios)
    if not same:
        raise SystemExit("the two sides did not load the same rows")
    return {"ratios": ratios, "result": result}


if __name__ == "__main__":
    main()
