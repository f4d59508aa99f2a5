"""The backfill steps driven by plain Python (no Airflow): the same calls the DAG's tasks make."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from tests.conftest import load_through_library
from tidemark.flows import backfill
from tidemark.timescale import compressor
from tidemark.connection import factory
from tidemark.model.dataset import Dataset
from tidemark.errors import InvalidInput
from tidemark.flows.verify import source_counts

UTC = timezone.utc
START = datetime(2024, 5, 1, tzinfo=UTC)


def request(ds: Dataset, hours: int = 24, step: str = "3 hours", **kw: Any) -> backfill.BackfillRequest:
    return backfill.BackfillRequest.from_params(
        {"dataset": ds.name, "start": START.isoformat(), "end": (START + timedelta(hours=hours)).isoformat(),
         "batch_interval": step, **kw}
    )


def run_all(dsn: str, ds: Dataset, run_id: str, fail: set[int] = frozenset()) -> tuple[dict, list, dict, dict]:
    return load_through_library(dsn, request(ds), run_id, fail=fail)


def test_full_flow_loads_verifies_and_compresses_progressively(dsn: str, conn: psycopg.Connection, registered_dataset: Dataset) -> None:
    summary, batches, states, results = run_all(dsn, registered_dataset, "flow-1")
    assert len(batches) == 8
    chunks = compressor.list_chunks(conn, registered_dataset, START, START + timedelta(hours=24))
    assert sum(c.is_compressed for c in chunks) >= 6  # compressed while batches were still arriving
    report = backfill.finalize(factory(dsn), summary, states, results)
    expected = source_counts(registered_dataset, START, START + timedelta(hours=24))
    assert report["rows_in_window"] == expected
    assert report["chunks"]["compressed"] == report["chunks"]["in_window"] == 12
    assert report["chunks"]["compressed_during_load"] >= 9
    assert all(c.is_compressed for c in compressor.list_chunks(conn, registered_dataset, START, START + timedelta(hours=24)))
    # Rerun: nothing left to plan.
    again = backfill.plan_run(factory(dsn), request(registered_dataset), "flow-2")
    assert again["batches"] == [] and again["plan"]["skipped_windows"] == 8


def test_a_failed_batch_stalls_the_watermark_and_finalize_fails(dsn: str, conn: psycopg.Connection, registered_dataset: Dataset) -> None:
    summary, batches, states, results = run_all(dsn, registered_dataset, "flow-f", fail={3})
    state = {(c.hypertable, c.range_start): c.is_compressed for c in compressor.list_chunks(conn, registered_dataset)}
    # Batch 3 is [9 h, 12 h): chunk [0, 6) is behind the gap, [6, 12) and later are not.
    assert state[("operations", START)] is True
    if summary["direct_compress"]:  # direct COPY wrote every chunk compressed; none was compressed (again) past the gap
        assert not conn.execute(
            "SELECT count(*) FROM tidemark.compression_log WHERE run_id = %s AND seconds > 0 AND range_end > %s",
            ("flow-f", START + timedelta(hours=6)),
        ).fetchone()[0]
    else:
        assert state[("operations", START + timedelta(hours=6))] is False
        assert state[("operations", START + timedelta(hours=12))] is False
    with pytest.raises(backfill.RunFailed, match=r"batches \[3\] failed.*clear the failed task"):
        backfill.finalize(factory(dsn), summary, states, results)
    assert state == {(c.hypertable, c.range_start): c.is_compressed for c in compressor.list_chunks(conn, registered_dataset)}


def test_bad_params_are_refused_before_any_write(conn: psycopg.Connection) -> None:
    for params, match in [
        ({"dataset": "nope", "start": "2024-01-01", "end": "2024-01-02"}, "unknown dataset"),
        ({"dataset": "ledgers", "start": "2024-01-02", "end": "2024-01-01"}, "start"),
        ({"dataset": "ledgers", "start": "2024-01-01", "end": "2024-01-02", "batch_interval": "0 hours"}, "positive"),
        ({"dataset": "ledgers", "start": "2024-01-01", "end": "2025-01-01", "batch_interval": "1 minute"}, "1024"),
        ({"dataset": "ledgers", "start": "yesterday", "end": "2024-01-02"}, "yesterday"),
    ]:
        with pytest.raises(InvalidInput, match=match):
            backfill.BackfillRequest.from_params(params)


def test_compression_policies_are_paused_for_the_load_and_restored(
    dsn: str, conn: psycopg.Connection, registered_dataset: Dataset
) -> None:
    from tidemark.timescale import policies

    connect = factory(dsn)
    planned = backfill.plan_run(connect, request(registered_dataset, hours=6), "policies")
    assert policies.scheduled(conn, registered_dataset) == {t.name: False for t in registered_dataset.tables}
    states, results = {}, {}
    for b in planned["batches"]:
        results[b["index"]] = backfill.insert_batch(connect, planned["plan"], b)
        states[b["index"]] = "success"
    backfill.finalize(connect, planned["plan"], states, results)
    assert policies.scheduled(conn, registered_dataset) == {t.name: True for t in registered_dataset.tables}
