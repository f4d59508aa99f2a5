"""Benchmarks only (bench/bench_airflow.py with --dsn): make a per-benchmark dataset known to Airflow's processes.

Against a shared server the benchmark loads a dataset of its own (unique name
and schema) so it never touches real data; the DAG looks datasets up by name in
``tidemark.declare.catalog``, so each Airflow process started by the benchmark
registers it at interpreter start-up from ``TIDEMARK_BENCH_DATASET=name:schema``.
This directory is put on PYTHONPATH only by the benchmark, never in production.
"""

import os

_spec = os.environ.get("TIDEMARK_BENCH_DATASET")
if _spec:
    try:
        from tidemark.declare import catalog as _catalog
        from tidemark.demo.ledgers import ledgers_dataset as _ledgers

        _name, _, _schema = _spec.partition(":")
        _catalog.register(_name, lambda: _ledgers(name=_name, schema=_schema or _name))
    except Exception as _exc:  # noqa: BLE001 - never break interpreter start-up
        import sys

        print(f"bench sitecustomize: could not register {_spec!r}: {_exc}", file=sys.stderr)
