"""Profile the loader once: cProfile over ``tidemark.load.loader.load_batch`` for a few batches.

Writes the top of the profile (by own time and by cumulative time) to
bench/results/loader_profile.txt, plus a split of each batch's time into
source generation (synthetic rows), COPY-text encoding and the database.
cProfile sees only Python: time the client spends waiting for the database
shows up in psycopg's wait functions.

    python bench/profile_loader.py [--batches 4] [--batch-hours 3] [--dsn URL]
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, UTC, base_parser, fresh_side, log  # noqa: E402

from tidemark.connection import factory  # noqa: E402
from tidemark.load.encoding import TableEncoder  # noqa: E402
from tidemark.load.loader import load_batch  # noqa: E402
from tidemark.flows.plan import plan_batches  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)


def split_generation(ds: Any, batches: list[Any]) -> dict[str, float]:
    """Where a batch's reading and encoding time goes, measured without the profiler's overhead."""
    out = {"source_init": 0.0, "rows": 0.0, "encode": 0.0}
    for b in batches:
        t0 = time.perf_counter()
        source = ds.source.stream
        out["source_init"] += time.perf_counter() - t0
        for t in ds.tables:
            t1 = time.perf_counter()
            rows = list(source.rows(t.name, b.start, b.end))
            t2 = time.perf_counter()
            enc = TableEncoder(ds.name, t, b.start, b.end)
            enc.add(rows)
            enc.finish().close()
            out["rows"] += t2 - t1
            out["encode"] += time.perf_counter() - t2
    return {k: round(v, 3) for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--batch-hours", type=float, default=3.0)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    step = timedelta(hours=args.batch_hours)
    batches = list(plan_batches(START, START + step * args.batches, step).batches)
    with fresh_side("profile", args.dsn) as side:
        connect = factory(side.dsn)
        log(f"profiling load_batch over {len(batches)} batches of {args.batch_hours:g} h")
        prof = cProfile.Profile()
        results = []
        prof.enable()
        for b in batches:
            results.append(load_batch(connect, side.dataset, b, "bench-profile"))
        prof.disable()
        split = split_generation(side.dataset, batches)
    rows = sum(r.total_rows for r in results)
    gen = sum(r.generate_seconds for r in results)
    db = sum(r.db_seconds for r in results)
    total_split = sum(split.values())
    head = [
        f"Tidemark loader profile: load_batch x {len(batches)} batches of {args.batch_hours:g} h, {rows:,} rows",
        f"(under cProfile) generate {gen:.2f} s + database {db:.2f} s",
        "generation split without the profiler: "
        + ", ".join(f"{k} {v:.2f} s ({v / total_split:.0%})" for k, v in split.items()),
        "",
    ]
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.strip_dirs()
    buf.write("=== by own time (tottime) ===\n")
    st.sort_stats("tottime").print_stats(args.top)
    buf.write("=== by cumulative time ===\n")
    st.sort_stats("cumulative").print_stats(args.top)
    text = "\n".join(head) + buf.getvalue()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "loader_profile.txt"
    path.write_text(text)
    print("\n".join(head))
    lines = buf.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    print("\n".join(lines[start:start + 13]))
    print(f"profile: {path}")
    return {"split": split, "generate_seconds": gen, "db_seconds": db, "rows": rows, "path": str(path)}


if __name__ == "__main__":
    main()
