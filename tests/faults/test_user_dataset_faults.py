"""Engine kill -9 in the middle of loading a user's own dataset (Parquet files), then resume.

The same promise as for the synthetic dataset: lost asynchronous commits are found by verification
and reloaded from the files, and the result equals a clean run, row for row, every chunk compressed.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import EmbeddedEngine
from tests.faults.test_faults import END, HOURS, START, kill_mid_backfill_then_resume, run_backfill
from tidemark.declare import catalog
from tidemark.timescale import compressor
from tidemark.connection import connect
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.sources import FilesSource
from tidemark.flows.verify import checksum


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 hours of readings every 5 s, in hourly Parquet files."""
    root = tmp_path_factory.mktemp("lake")
    for h in range(HOURS):
        hour = START + timedelta(hours=h)
        folder = root / hour.strftime("%Y-%m-%d/%H")
        folder.mkdir(parents=True)
        times = [hour + timedelta(seconds=5 * k) for k in range(720)]
        pq.write_table(pa.table({
            "t": pa.array(times, pa.timestamp("us", "UTC")),
            "device": [f"d{k % 8}" for k in range(720)],
            "value": [float((h * 720 + k) % 1000) for k in range(720)],
        }), folder / "readings.parquet")
    return root


def readings(lake: Path) -> Dataset:
    tag = uuid.uuid4().hex[:8]
    table = Hypertable("readings", "t", (Column("t", "timestamptz"), Column("device", "text"),
                                         Column("value", "double precision")),
                       chunk_interval=timedelta(hours=2), segmentby=("device",), schema=f"lake_{tag}",
                       source=FilesSource(f"file://{lake}/{{start:%Y-%m-%d/%H}}/*.parquet", base_dir=lake))
    return Dataset(f"lake_{tag}", (table,))


def test_engine_killed_mid_load_of_a_files_dataset_then_resumed_equals_clean_run(
    dsn: str, private_engine: EmbeddedEngine, lake: Path
) -> None:
    clean = readings(lake)
    catalog.register(clean)
    try:
        run_backfill(dsn, clean, "clean-lake")
        with connect(dsn) as conn:
            oracle = checksum(conn, clean, START, END)
    finally:
        catalog.unregister(clean.name)
    assert oracle["readings"][0] == HOURS * 720

    private_engine.start()
    d = readings(lake)
    catalog.register(d)
    try:
        kill_mid_backfill_then_resume(private_engine, d, "killed-lake", durable=4, in_flight=4)
        with connect(private_engine.dsn) as conn:
            assert checksum(conn, d, START, END) == oracle
            chunks = compressor.list_chunks(conn, d, START, END)
            assert chunks and all(c.is_compressed for c in chunks)
    finally:
        catalog.unregister(d.name)
