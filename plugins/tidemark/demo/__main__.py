"""``make demo``: run tidemark_backfill through ``airflow dags test`` and print its report.

Airflow runs as a subprocess (its chatter goes to a log file); the report is
read back from Tidemark's bookkeeping in the database, so what is printed is
what the run recorded, not what the demo assumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tidemark.connection import connect
from tidemark.flows.report import format_report


def main(argv: list[str]) -> int:
    conf = json.loads(argv[1]) if len(argv) > 1 else {}
    dsn = os.environ["AIRFLOW_CONN_TIDEMARK_TIMESCALE"]
    log_path = Path(os.environ.get("AIRFLOW_HOME", ".")) / "demo-dags-test.log"
    airflow = Path(sys.executable).with_name("airflow")
    print(f"tidemark demo: airflow dags test tidemark_backfill -c '{json.dumps(conf)}'")
    print(f"  (Airflow's log: {log_path})", flush=True)
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        done = subprocess.run([str(airflow), "dags", "test", "tidemark_backfill", "-c", json.dumps(conf)],
                              stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT run_id, state, report FROM tidemark.runs WHERE dataset = %s ORDER BY started_at DESC LIMIT 1",
            (conf.get("dataset", "ledgers"),),
        ).fetchone()
    if done.returncode != 0 or not row or row[1] != "succeeded":
        print(f"\nthe run did not succeed (exit {done.returncode}); last lines of {log_path}:", file=sys.stderr)
        lines = log_path.read_text(errors="replace").splitlines()
        print("\n".join(line[:300] for line in lines[-40:]), file=sys.stderr)
        return 1
    print(f"\n{format_report(row[2])}\n  wall time of airflow dags test: {wall:.1f} s (run {row[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
