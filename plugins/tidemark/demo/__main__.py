"""``make demo``, ``make example`` and ``make load``: run tidemark_backfill through ``airflow dags test``, show its
progress, print its report.

    python -m tidemark.demo '{"dataset": "ledgers", "start": ..., "end": ..., "batch_interval": "auto"}'
    python -m tidemark.demo dataset=weather start=2024-01-01 end=2024-01-08 batch_interval=auto   # make load

Airflow runs as a subprocess (its chatter goes to a log file). While it runs,
a progress line on stderr (``tidemark.demo.terminal``) shows batches, rows,
bytes stored and the ETA, read from Tidemark's bookkeeping every second. The
report is read back from ``tidemark.runs`` at the end, so it is printed
whatever Airflow's log level, and what is printed is what the run recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tidemark.connection import connect
from tidemark.demo.terminal import ProgressLine
from tidemark.flows.report import format_report
from tidemark.model.timeparse import parse_instant


def parse_conf(args: list[str]) -> dict[str, Any]:
    """The run's conf: one JSON object, or ``key=value`` words (empty values left out).

    ``start`` and ``end`` may be any ISO 8601 time, a bare date too (UTC without an offset): they are handed
    on complete (``2024-01-01`` -> ``2024-01-01T00:00:00+00:00``), as the trigger form's schema wants them.
    """
    conf: dict[str, Any] = {}
    if len(args) == 1 and args[0].lstrip().startswith("{"):
        conf = json.loads(args[0])
        if not isinstance(conf, dict):
            raise SystemExit("the conf must be a JSON object")
    else:
        for word in args:
            key, sep, value = word.partition("=")
            if not sep or not key:
                raise SystemExit(f"expected key=value, got {word!r} (e.g. dataset=weather start=2024-01-01 end=2024-01-08)")
            if value:
                conf[key] = value
    for key in ("start", "end"):
        if isinstance(conf.get(key), str) and conf[key]:
            try:
                conf[key] = parse_instant(conf[key]).isoformat()
            except ValueError as exc:
                raise SystemExit(f"{key}={conf[key]!r}: {exc}") from None
    return conf


def main(argv: list[str]) -> int:
    conf = parse_conf(argv[1:])
    dataset = str(conf.get("dataset", "ledgers"))
    dsn = os.environ["AIRFLOW_CONN_TIDEMARK_TIMESCALE"]
    log_path = Path(os.environ.get("AIRFLOW_HOME", ".")) / "demo-dags-test.log"
    airflow = Path(sys.executable).with_name("airflow")
    print(f"tidemark: airflow dags test tidemark_backfill -c '{json.dumps(conf)}'")
    print(f"  (Airflow's log: {log_path}; progress below every second)", flush=True)
    with connect(dsn) as conn:
        since = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    line = ProgressLine(lambda: connect(dsn), dataset, since, sys.stderr)
    t0 = time.monotonic()
    line.start()
    try:
        with open(log_path, "w") as log:
            done = subprocess.run([str(airflow), "dags", "test", "tidemark_backfill", "-c", json.dumps(conf)],
                                  stdout=log, stderr=subprocess.STDOUT)
    finally:
        line.stop()
    wall = time.monotonic() - t0
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT run_id, state, report FROM tidemark.runs WHERE dataset = %s AND started_at >= %s"
            " ORDER BY started_at DESC LIMIT 1",
            (dataset, since),
        ).fetchone()
    if done.returncode != 0 or not row or row[1] != "succeeded":
        print(f"\nthe run did not succeed (exit {done.returncode}); last lines of {log_path}:", file=sys.stderr)
        lines = log_path.read_text(errors="replace").splitlines()
        print("\n".join(line[:300] for line in lines[-40:]), file=sys.stderr)
        if row:
            with connect(dsn) as conn:
                failed = conn.execute(
                    "SELECT batch_index, try_number, error FROM tidemark.batch_failures WHERE run_id = %s"
                    " ORDER BY batch_index, try_number", (row[0],)).fetchall()
            for index, tried, error in failed:
                print(f"batch {index}, try {tried}: {error}", file=sys.stderr)
        return 1
    print(f"\n{format_report(row[2])}\n  wall time of airflow dags test: {wall:.1f} s (run {row[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
