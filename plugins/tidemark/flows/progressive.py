"""Progressive compression: bounded backlog while batches load, chunks compressed behind the watermark.

Three parts of one mechanism: backpressure (a batch far beyond the
watermark waits, so the uncompressed backlog stays bounded whatever order
the scheduler runs batches in), the batch that completes a chunk compressing
it at once, and the sensor's poke, which compresses what is left behind the
watermark and records one progress observation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

from tidemark import faults
from tidemark.connection import ConnectionFactory, one
from tidemark.declare import catalog
from tidemark.flows import report, watermark
from tidemark.flows.watermark import Watermark
from tidemark.model.batch import Batch
from tidemark.model.dataset import Dataset
from tidemark.model.run_plan import RunPlan, windows_of
from tidemark.state import progress
from tidemark.timescale import columnstore, compressor

__all__ = [
    "FAILED_STATES", "PokeOutcome", "compress_completed", "dataset_of", "failed_batches", "failure_message", "poke",
    "wait_reason",
]

log = logging.getLogger(__name__)

# Task states after which a batch will not succeed without a human clearing it.
FAILED_STATES = frozenset({"failed", "upstream_failed", "removed"})


def dataset_of(plan: RunPlan) -> Dataset:
    """The run's dataset with the write mode its plan resolved."""
    return columnstore.with_mode(catalog.get(plan.dataset), list(plan.direct_compress))


def _all_direct(plan: RunPlan, ds: Dataset) -> bool:
    direct = set(plan.direct_compress)
    return bool(direct) and all(t.name in direct for t in ds.tables)


def failed_batches(states: Mapping[int, str | None], planned: int) -> list[int]:
    """Map indexes of this plan's batches that are in a failed state.

    Only indexes below ``planned`` count. When a cleared run plans again (the whole run cleared, or
    `airflow backfill create --reprocess-behavior failed|completed`), the windows its earlier try
    loaded are skipped, the mapping shrinks, and Airflow marks the surplus map indexes ``removed``:
    they are left over from the earlier plan, not failures of this one.
    """
    return sorted(i for i, s in states.items() if i < planned and s in FAILED_STATES)


def failure_message(plan: RunPlan, failed: Sequence[int]) -> str:
    return (
        f"batches {list(failed)} failed ({windows_of(plan, failed)}); chunks from the first failed window on stay "
        "uncompressed. Resume: clear the failed task instances of this run (UI: select them > Clear, or REST "
        "clearTaskInstances with dag_run_id and only_failed=true), or trigger a new run with the same params - "
        "loaded windows are skipped."
    )


def wait_reason(
    connect: ConnectionFactory,
    plan: RunPlan | Mapping[str, Any],
    batch: Batch | Mapping[str, Any],
    *,
    max_ahead: int,
    sibling_failed: bool | Callable[[], bool],
    stale_after: timedelta,
) -> str | None:
    """Why this batch should wait before loading, or None to load now.

    Backpressure: a batch with more than ``max_ahead`` of the plan's batches
    between the watermark and itself waits, so the uncompressed backlog stays
    bounded whatever order the scheduler runs the batches in. Never waits
    when waiting cannot help or is not needed: every table is written
    straight into the columnstore (there is no uncompressed backlog), a
    sibling batch failed (the watermark will not pass it), or no batch of the
    run has committed for ``stale_after``. ``sibling_failed`` may be a
    callable: it is asked only when the batch would otherwise wait, so a batch
    that loads at once spends no execution-API call on its siblings.
    """
    run = RunPlan.of(plan)
    if max_ahead <= 0 or run.dry_run or (isinstance(sibling_failed, bool) and sibling_failed):
        return None
    b = run.batch_of(batch)
    if _all_direct(run, catalog.get(run.dataset)):
        return None
    with connect() as conn:
        wm = watermark.read(conn, run)
        now = one(conn.execute("SELECT clock_timestamp()"))[0]
    ahead = b.index - wm.completed  # the plan's batches between the watermark and this one
    if ahead < max_ahead:
        return None
    if wm.last_commit is not None and now - wm.last_commit > stale_after:
        return None
    if callable(sibling_failed) and sibling_failed():
        return None
    return (
        f"batch {b.index} waits: it starts {ahead} batches beyond the committed prefix ({wm.time.isoformat()}) and at "
        f"most {max_ahead} batches load ahead of it (TIDEMARK_MAX_BATCHES_AHEAD), keeping the uncompressed backlog bounded"
    )


def compress_completed(connect: ConnectionFactory, plan: RunPlan, ds: Dataset, b: Batch) -> int:
    """Compress the chunks this batch's commit completed (best effort: the sensor retries what fails)."""
    try:
        with connect() as conn:
            if ds.direct_compress:
                compressor.log_direct(conn, ds, b.start, b.end, plan.run_id)
            wm = watermark.read(conn, plan)
            done = []
            if (not _all_direct(plan, ds) or plan.recompress_unordered) and b.start < wm.time:  # else: nothing completed
                lower = max(plan.start, b.start - max(t.chunk_interval for t in ds.tables))
                done = compressor.compress_behind(
                    conn, ds, lower, wm.time, run_id=plan.run_id, recompress_unordered=plan.recompress_unordered,
                    attempts=1,
                )
            _observe(conn, plan, ds, wm)
            return sum(1 for r in done if r.ok and r.action != "unchanged")
    except Exception as exc:  # noqa: BLE001 - the batch is committed; the sensor compresses what is left
        log.warning("batch %d: compressing behind the watermark failed (%s); the sensor will retry", b.index, exc)
        return 0


def _observe(conn: psycopg.Connection, plan: RunPlan, ds: Dataset, wm: Watermark) -> None:
    """The batch's observation for the run's plot: rows, bytes stored and the backlog as its commit left them.

    Written straight into the columnstore, a run has no backlog to measure: one query (the bytes stored) then.
    """
    direct_only = _all_direct(plan, ds) and not plan.recompress_unordered
    chunks, size = (0, 0) if direct_only else compressor.backlog(conn, ds, plan.start, plan.end)
    progress.record_poke(
        conn, plan.run_id, watermark_batches=wm.completed, watermark_time=wm.time, backlog_chunks=chunks,
        backlog_bytes=size, remaining_chunks=chunks, remaining_bytes=size,
        stored_bytes=report.stored_bytes(conn, ds, plan.start, plan.end), batch=True,
    )


@dataclass(frozen=True)
class PokeOutcome:
    done: bool
    failed: list[int]
    watermark: Watermark
    compressed_now: int
    compressed_total: int
    compress_failures: int
    backlog_chunks: int
    backlog_bytes: int

    def line(self) -> str:
        wm = self.watermark
        return (
            f"watermark {wm.completed}/{wm.total} at {wm.time.isoformat()} | "
            f"compressed {self.compressed_now} chunks this poke, {self.compressed_total} in total"
            + (f" ({self.compress_failures} failed, retried next poke)" if self.compress_failures else "")
            + f" | uncompressed backlog {self.backlog_chunks} chunks ({self.backlog_bytes / 1048576:.1f} MiB)"
        )


def poke(connect: ConnectionFactory, plan: RunPlan | Mapping[str, Any], states: Mapping[int, str | None]) -> PokeOutcome:
    """One sensor poke: read the watermark, compress behind it, record the observation.

    ``states`` are the batch tasks' states: a failed batch ends the wait
    (the watermark will not pass it); they say nothing about the watermark.
    """
    run = RunPlan.of(plan)
    ds = dataset_of(run)
    faults.check("sensor.poke")
    with connect() as conn:
        wm = watermark.read(conn, run)
        # The backlog before compressing is what the load accumulated: that is the peak to record.
        peak_chunks, peak_bytes = compressor.backlog(conn, ds, run.start, run.end)
        results = compressor.compress_behind(
            conn, ds, run.start, wm.time, run_id=run.run_id, recompress_unordered=run.recompress_unordered
        ) if run.batches else []
        backlog_chunks, backlog_bytes = (
            compressor.backlog(conn, ds, run.start, run.end) if results else (peak_chunks, peak_bytes)
        )
        progress.record_poke(
            conn, run.run_id, watermark_batches=wm.completed, watermark_time=wm.time, backlog_chunks=peak_chunks,
            backlog_bytes=peak_bytes, remaining_chunks=backlog_chunks, remaining_bytes=backlog_bytes,
            stored_bytes=report.stored_bytes(conn, ds, run.start, run.end),
        )
        total = one(conn.execute(
            "SELECT count(*) FROM tidemark.compression_log WHERE run_id = %s AND phase = 'progressive'", (run.run_id,)
        ))[0]
    return PokeOutcome(
        done=wm.complete,
        failed=failed_batches(states, len(run.batches)),
        watermark=wm,
        compressed_now=sum(1 for r in results if r.ok),
        compressed_total=int(total),
        compress_failures=sum(1 for r in results if not r.ok),
        backlog_chunks=backlog_chunks,
        backlog_bytes=backlog_bytes,
    )
