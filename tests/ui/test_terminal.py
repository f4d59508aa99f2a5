"""The terminal's progress line (make demo / example / load): what it draws, and that it follows a real run."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from tests.conftest import load_through_library
from tidemark.connection import connect, factory
from tidemark.demo import __main__ as runner
from tidemark.demo.terminal import ProgressLine, bar, describe
from tidemark.flows import backfill
from tidemark.model.dataset import Dataset

START = datetime(2024, 9, 1, tzinfo=UTC)


def test_the_line_says_batches_rows_storage_and_time() -> None:
    view = {"planned_batches": 8, "loaded_batches": 2, "rows_loaded": 288001, "stored_bytes": 8 * 1048576,
            "elapsed_seconds": 21.0, "eta_seconds": 63.0, "state": "running",
            "strip": [{"status": "loaded"}, {"status": "failed"}]}
    assert bar(2, 8, 8) == "[##......]" and bar(0, 0, 4) == "[####]"
    assert describe(view) == "[######..................] 2/8 batches  1 failed  288,001 rows  8.0 MiB stored  21 s elapsed  ETA 1 min 03 s"
    done = {**view, "planned_batches": 0, "loaded_batches": 0, "state": "succeeded", "strip": []}
    assert "(every window already loaded)" in describe(done) and describe(done).endswith("succeeded")


def test_the_conf_comes_as_json_or_as_key_value_words() -> None:
    assert runner.parse_conf(['{"dataset": "x", "start": "2024-02-01T06:00:00+02:00"}']) == {
        "dataset": "x", "start": "2024-02-01T04:00:00+00:00"}
    # A bare date is a whole UTC time for the trigger form's date-time schema.
    assert runner.parse_conf(["dataset=weather", "start=2024-01-01", "end=2024-01-08", "batch_interval="]) == {
        "dataset": "weather", "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-08T00:00:00+00:00"}


def test_it_follows_a_run_from_waiting_to_every_batch(dsn: str, conn: psycopg.Connection, registered_dataset: Dataset) -> None:
    since = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    stream = io.StringIO()  # not a terminal: a line whenever the loaded batches change
    line = ProgressLine(lambda: connect(dsn), registered_dataset.name, since, stream, every=0.05, quiet_every=60)
    line.start()
    try:
        req = backfill.BackfillRequest.from_params(
            {"dataset": registered_dataset.name, "start": START.isoformat(),
             "end": (START + timedelta(hours=12)).isoformat(), "batch_interval": "3 hours"})
        summary, _, states, results = load_through_library(dsn, req, f"tidemark_backfill/term_{uuid.uuid4().hex[:8]}")
        backfill.finalize(factory(dsn), summary, states, results)
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while "succeeded" not in stream.getvalue() and datetime.now(UTC) < deadline:
            line.join(0.1)
    finally:
        line.stop()
    text = stream.getvalue()
    assert line.run_id is not None and line.run_id.startswith("tidemark_backfill/term_")
    assert "4/4 batches" in text and "succeeded" in text and "MiB stored" in text, text
