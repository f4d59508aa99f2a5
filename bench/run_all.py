"""Run every Tidemark benchmark (``make bench``) and print all ratios in one table at the end.

    python bench/run_all.py [--quick] [--dsn URL] [--only insert,progressive,airflow,scaling,profile,speed,sources,adbc]

Each benchmark starts fresh embedded engines of its own (or, with --dsn /
TIDEMARK_BENCH_DSN, uses unique schemas on that server) and writes
bench/results/<name>.json; this script adds bench/results/summary.json.
A missed goal is reported, not an error: the exit status is non-zero only if
a benchmark could not run. About 6-8 minutes on the 2-core dev machine.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, Ratio, base_parser, environment, log, ratio_line  # noqa: E402

import bench_adbc  # noqa: E402
import bench_airflow  # noqa: E402
import bench_insert  # noqa: E402
import bench_progressive  # noqa: E402
import bench_scaling  # noqa: E402
import bench_sources  # noqa: E402
import bench_speed  # noqa: E402
import profile_loader  # noqa: E402

BENCHMARKS = {
    "insert": (bench_insert.main, "1. insert path vs bare COPY"),
    "progressive": (bench_progressive.main, "2. progressive vs compress-at-end"),
    "airflow": (bench_airflow.main, "3. orchestration overhead"),
    "scaling": (bench_scaling.main, "4. scaling"),
    "profile": (profile_loader.main, "loader profile"),
    "speed": (bench_speed.main, "5. the whole DAG vs the engine's limit (S1, S2, S4)"),
    "sources": (bench_sources.main, "6. each source kind vs bare COPY; a batch's memory at N and 10 N rows"),
    "adbc": (bench_adbc.main, "7. ADBC's Arrow ingest vs Tidemark's binary COPY encoder (issue 21)"),
}


def main() -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of " + ", ".join(BENCHMARKS))
    args = p.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    passthrough = (["--dsn", args.dsn] if args.dsn else []) + (["--quick"] if args.quick else [])
    t0 = time.perf_counter()
    summary: dict[str, dict] = {}
    failures = []
    for name in chosen:
        fn, title = BENCHMARKS[name]
        print(f"\n{'=' * 100}\n{title}  (bench/{fn.__module__}.py)\n{'=' * 100}", flush=True)
        b0 = time.perf_counter()
        try:
            out = fn(passthrough)
            ratios = out.get("ratios", []) if isinstance(out, dict) else []
            summary[name] = {"title": title, "seconds": round(time.perf_counter() - b0, 1),
                             "ratios": [r.to_dict() for r in ratios], "ok": True}
        except Exception as exc:  # noqa: BLE001 - keep going: the other benchmarks still tell something
            traceback.print_exc()
            failures.append(name)
            summary[name] = {"title": title, "seconds": round(time.perf_counter() - b0, 1), "ok": False,
                             "error": f"{type(exc).__name__}: {exc}"[:2000], "ratios": []}
        log(f"{name} took {summary[name]['seconds']} s")
    total = time.perf_counter() - t0

    print(f"\n{'=' * 100}\nTidemark benchmarks - summary ({total / 60:.1f} min; "
          f"{'real server via DSN' if args.dsn else 'fresh embedded engines'}; results in {RESULTS})\n{'=' * 100}")
    met = missed = 0
    for name, s in summary.items():
        if not s["ok"]:
            print(f"  {name}: FAILED to run - {s['error'].splitlines()[0]}")
            continue
        for r in s["ratios"]:
            ratio = Ratio(r["name"], r["value"], r["goal"], r["unit"], r["note"])
            print("  " + ratio_line(ratio))
            met += ratio.met is True
            missed += ratio.met is False
    print(f"\n  goals met: {met}, missed: {missed}" + (f"; benchmarks that failed to run: {failures}" if failures else ""))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(
        {"environment": environment(), "total_seconds": round(total, 1), "benchmarks": summary}, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
