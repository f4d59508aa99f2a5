"""What a run wrote and how compact it is, in both write modes (real engine): the figures the tab, the runs page and
the report show. Direct COPY leaves TimescaleDB no "before" size, so Tidemark measures it; the measure is checked
here against TimescaleDB's own figure for chunks compress_chunk compressed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from tests.conftest import load_through_library
from tidemark.connection import factory
from tidemark.flows import backfill, report
from tidemark.model.dataset import Dataset
from tidemark.timescale import columnstore

START = datetime(2024, 8, 1, tzinfo=UTC)


def _load(dsn: str, ds: Dataset, start: datetime, hours: int = 12) -> dict:
    req = backfill.BackfillRequest.from_params(
        {"dataset": ds.name, "start": start.isoformat(), "end": (start + timedelta(hours=hours)).isoformat(),
         "batch_interval": "6 hours"})
    summary, _, states, results = load_through_library(dsn, req, f"tidemark_backfill/storage_{uuid.uuid4().hex[:8]}")
    done = backfill.finalize(factory(dsn), summary, states, results)
    assert done is not None
    return dict(done)


def test_classic_and_direct_runs_both_say_what_was_stored_and_what_it_stands_for(
    dsn: str, conn: psycopg.Connection, registered_dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(columnstore.ENV, "off")
    classic = _load(dsn, registered_dataset, START)
    monkeypatch.setenv(columnstore.ENV, "on")
    direct = _load(dsn, registered_dataset, START + timedelta(days=1))

    c, d = classic["bytes"], direct["bytes"]
    assert classic["chunks"]["written_compressed"] == 0 and classic["chunks"]["compressed_afterwards"] == 6
    assert c["uncompressed"] == c["uncompressed_from_timescaledb"] == c["before_compression"] > 0
    assert c["uncompressed_measured"] == 0 and c["stored"] > 0 and c["storage_ratio"] > 1.5
    assert direct["chunks"]["written_compressed"] == 6 and direct["chunks"]["compressed_afterwards"] == 0
    assert d["before_compression"] == 0 and d["ratio"] is None  # TimescaleDB keeps no figures for these chunks
    assert d["uncompressed"] == d["uncompressed_measured"] > d["stored"] == d["written_compressed"] > 0
    # The same rows either way: the two ratios agree within the difference of the two layouts.
    assert abs(d["storage_ratio"] / c["storage_ratio"] - 1) < 0.25, (c, d)

    # The measure itself, on the classic chunks, against TimescaleDB's before_compression_total_bytes.
    for table in registered_dataset.tables:
        ranges = conn.execute(
            "SELECT c.range_start, c.range_end, s.before_compression_total_bytes"
            " FROM chunk_compression_stats(%s::regclass) s JOIN timescaledb_information.chunks c"
            "   ON c.chunk_schema = s.chunk_schema AND c.chunk_name = s.chunk_name"
            " WHERE s.before_compression_total_bytes IS NOT NULL", (f"{table.schema}.{table.name}",)).fetchall()
        measured, probed = report._measure_uncompressed(conn, table, [(r[0], r[1]) for r in ranges], report.PROBE_ROWS)
        actual = sum(int(r[2]) for r in ranges)
        assert probed > 0 and abs(measured / actual - 1) < 0.1, (table.name, measured, actual)
    # The probe leaves nothing behind.
    assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'tidemark_size_probe'").fetchone()[0] == 0

    text = report.format_report(direct)
    assert "MiB stored for" in text and "written compressed by direct COPY" in text and " B written" not in text
    assert "checked against the batch ledger and the source's own count" in text


def test_a_rerun_says_it_loaded_nothing_instead_of_zero_rows_per_second(
    dsn: str, registered_dataset: Dataset,
) -> None:
    _load(dsn, registered_dataset, START, hours=6)
    again = _load(dsn, registered_dataset, START, hours=6)
    assert again["batches"]["loaded"] == 0 and again["this_attempt_loaded_nothing"]
    text = report.format_report(again)
    assert "0 rows/s" not in text and "nothing was loaded by this run" in text
    assert again["bytes"]["stored"] > 0  # the window's storage is still told


def test_reports_written_before_the_storage_fields_still_format() -> None:
    old = {
        "dataset": "ledgers", "window": {"start": "a", "end": "b", "batch_interval": "6 hours"},
        "batches": {"windows": 2, "loaded": 2, "already_loaded": 0, "reloaded_after_verification": 0},
        "rows_loaded": {"ledgers": 10}, "rows_loaded_total": 10, "rows_in_window_total": 10, "rows_per_second": 5,
        "load_seconds": 2.0, "peak_uncompressed_backlog": {"chunks": 0, "bytes": 0},
        "chunks": {"in_window": 2, "compressed": 2, "compressed_during_load": 2, "compressed_by_sensor_after_last_batch": 0,
                   "compressed_in_final_pass": 0, "left_for_live_ingestion": []},
        "bytes": {"before_compression": 0, "after_compression": 0, "ratio": None, "written_compressed": 63758336},
        "seconds_from_last_batch_to_fully_compressed": 0.4,
    }
    text = report.format_report(old)
    assert "60.8 MiB written straight into the columnstore" in text and "5 rows/s" in text
    assert report.human_bytes(1536) == "1.5 KiB" and report.human_bytes(12) == "12 B"
    # A CSV source does not count its rows: the report says what the rows were checked against instead.
    csv = {**old, "verified_against": {"ledger": True, "source_counts": [], "not_counted_by_source": ["readings"]}}
    assert "(checked against the batch ledger; the source does not count its rows, so not against the source)" in (
        report.format_report(csv))
