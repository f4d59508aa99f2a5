"""Direct-to-columnstore COPY: when the backfill uses it, and what it leaves (real engine)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tidemark.flows import backfill, progressive
from tidemark.timescale import columnstore, compressor
from tidemark.connection import factory
from tidemark.model.dataset import Dataset
from tidemark.timescale.schema import table_ident

UTC = timezone.utc
START = datetime(2024, 6, 1, tzinfo=UTC)


def test_auto_is_direct_for_plain_tables_and_classic_once_one_has_a_unique_index(
    conn: psycopg.Connection, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(columnstore.ENV, raising=False)
    assert columnstore.resolve(conn, dataset) == [t.name for t in dataset.tables]
    monkeypatch.setenv(columnstore.ENV, "off")
    assert columnstore.resolve(conn, dataset) == []
    monkeypatch.setenv(columnstore.ENV, "auto")
    ledgers = dataset.table("ledgers")
    conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (sequence, close_time)").format(table_ident(ledgers)))
    assert columnstore.blockers(conn, ledgers) == ["unique index"]
    assert columnstore.resolve(conn, dataset) == []  # auto: all or nothing
    monkeypatch.setenv(columnstore.ENV, "on")
    assert columnstore.resolve(conn, dataset) == ["transactions", "operations"]


def plan(connect: Any, ds: Dataset, hours: int, interval: str, run_id: str) -> tuple[Any, list[Any]]:
    """Plan [START, START + hours) of the dataset: (summary, batches)."""
    request = backfill.BackfillRequest.from_params({
        "dataset": ds.name, "start": START.isoformat(),
        "end": (START + timedelta(hours=hours)).isoformat(), "batch_interval": interval})
    planned = backfill.plan_run(connect, request, run_id)
    return planned["plan"], planned["batches"]


def test_direct_batches_leave_every_chunk_compressed_and_backpressure_off(
    dsn: str, conn: psycopg.Connection, registered_dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(columnstore.ENV, raising=False)
    connect = factory(dsn)
    summary, batches = plan(connect, registered_dataset, 48, "auto", "direct-1")
    assert summary["direct_compress"] and summary["recompress_unordered"]  # folds what direct COPY leaves unordered
    # The last batch first: with classic COPY it would wait; here nothing is uncompressed, so it never does.
    assert progressive.wait_reason(connect, summary, batches[-1], max_ahead=1, sibling_failed=False,
                                stale_after=timedelta(minutes=1)) is None
    results = {b["index"]: backfill.insert_batch(connect, summary, b) for b in reversed(batches)}
    chunks = compressor.list_chunks(conn, registered_dataset, START, START + timedelta(hours=48))
    assert chunks and all(c.is_compressed for c in chunks)
    states = {b["index"]: "success" for b in batches}
    report = backfill.finalize(connect, summary, states, results)
    assert report["write_mode"].startswith("direct") and report["bytes"]["written_compressed"] > 0
    assert report["rows_in_window"] == registered_dataset.source.expected_counts(  # type: ignore[union-attr]
        registered_dataset.tables, START, START + timedelta(hours=48))
    assert report["chunks"]["compressed_in_final_pass"] == 0  # nothing recompressed: one sorted write per chunk
    assert all(not c.unordered for c in compressor.list_chunks(conn, registered_dataset, START, START + timedelta(hours=48)))


def test_classic_batches_far_ahead_wait_and_sibling_states_are_asked_only_then(
    dsn: str, registered_dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(columnstore.ENV, "off")
    connect = factory(dsn)
    summary, batches = plan(connect, registered_dataset, 12, "3 hours", "classic-wait-1")
    assert not summary["direct_compress"] and len(batches) == 4
    asked: list[int] = []

    def siblings(failed: bool) -> Callable[[], bool]:
        def ask() -> bool:
            asked.append(1)
            return failed
        return ask

    def reason(batch: int, failed: bool) -> str | None:
        return progressive.wait_reason(connect, summary, batches[batch], max_ahead=2, sibling_failed=siblings(failed),
                                    stale_after=timedelta(minutes=1))

    assert reason(1, failed=False) is None and not asked  # within max_ahead of the prefix: loads, no API call
    assert reason(3, failed=False) and len(asked) == 1  # 3 batches beyond the (empty) prefix: waits
    assert reason(3, failed=True) is None and len(asked) == 2  # a sibling failed: waiting cannot help
