"""The shapes of what crosses XCom between the backfill's tasks: one definition for producer and consumer.

XCom carries plain JSON, so these are TypedDicts (JSON objects with known
keys), not dataclasses: what plan pushes is exactly what insert_batch, the
sensor and finalize receive, and mypy checks both ends against the same type.
The values they stand for are read back at each task's boundary by
``RunPlan.of`` and ``Batch.from_dict``, which refuse a payload of the wrong
shape (an XCom from an older Tidemark, a hand-made dict in a drill) with a
message naming what is missing instead of a KeyError deep in a task.
"""

# No `from __future__ import annotations`: TypedDict must see NotRequired[...] itself (not as a string)
# for __required_keys__, which RunPlan.of uses, to be right.
from typing import NotRequired, TypedDict

__all__ = [
    "BatchPayload", "BatchResultPayload", "PlanPayload", "Planned", "Report", "RetentionInfo",
]


class BatchPayload(TypedDict):
    """One mapped insert_batch's input: its window (ISO 8601) and its index in the plan."""

    index: int
    start: str
    end: str


class RetentionInfo(TypedDict):
    hypertable: str
    job_id: int
    drop_after: str
    horizon: str
    scheduled: bool


class PlanPayload(TypedDict):
    """The run's plan as XCom carries it (``tidemark.model.run_plan.RunPlan`` writes and reads it)."""

    run_id: str
    dataset: str
    kind: str
    start: str
    end: str
    batch_interval: str
    batches: list[list[str]]  # [start, end] of batch 0, 1, ...
    skipped: list[list[str]]  # windows already loaded before this run
    total_windows: int
    skipped_windows: int
    planned_batches: int
    dry_run: bool
    retention: list[RetentionInfo]
    direct_compress: list[str]
    recompress_unordered: bool
    staging: NotRequired[str]  # catchup only
    already_staged: NotRequired[list[int]]


class Planned(TypedDict):
    """The plan task's outputs: the plan, and the batches its mapped task is expanded over."""

    plan: PlanPayload
    batches: list[BatchPayload]


class BatchResultPayload(TypedDict):
    """insert_batch's return value (one per mapped instance), read by the sensor and finalize."""

    index: int
    start: str
    end: str
    rows: dict[str, int]
    seconds: float
    generate_seconds: float
    db_seconds: float
    attempts: int


class ReloadedWindow(TypedDict):
    start: str
    end: str
    rows: dict[str, int]


class RefreshedAggregate(TypedDict):
    view: str
    on: str
    bucket_width: str | None
    start: str
    end: str
    seconds: float


class ReportWindow(TypedDict):
    start: str
    end: str
    batch_interval: str


class ReportBatches(TypedDict):
    windows: int
    loaded: int
    already_loaded: int
    reloaded_after_verification: int


class ReportAfterwards(TypedDict):
    during_load: int
    after_last_batch: int
    final_pass: int


class ReportChunks(TypedDict):
    in_window: int
    compressed: int
    compressed_during_load: int
    compressed_by_sensor_after_last_batch: int
    compressed_in_final_pass: int
    left_for_live_ingestion: list[str]
    written_compressed: NotRequired[int]  # by direct COPY
    compressed_afterwards: NotRequired[int]  # by compress_chunk
    afterwards: NotRequired[ReportAfterwards]


class ReportBytes(TypedDict):
    before_compression: int
    after_compression: int
    ratio: float | None
    written_compressed: NotRequired[int]  # chunks direct COPY wrote compressed: their size (no "before")
    stored: NotRequired[int]  # every mode: the window's chunks on disk
    uncompressed: NotRequired[int]  # what they stand for: TimescaleDB's before_compression + measured
    uncompressed_from_timescaledb: NotRequired[int]
    uncompressed_measured: NotRequired[int]
    probe_rows: NotRequired[int]
    storage_ratio: NotRequired[float | None]


class ReportBacklog(TypedDict):
    chunks: int
    bytes: int


class ReportVerified(TypedDict):
    ledger: bool
    source_counts: list[str]  # tables whose source counted its rows
    not_counted_by_source: list[str]


class Report(TypedDict):
    """finalize's return value, also stored in ``tidemark.runs.report``."""

    run_id: str
    dataset: str
    window: ReportWindow
    batches: ReportBatches
    rows_loaded: dict[str, int]
    rows_loaded_total: int
    rows_in_window: dict[str, int]
    rows_in_window_total: int
    load_seconds: float
    rows_per_second: int | None
    chunks: ReportChunks
    bytes: ReportBytes
    write_mode: NotRequired[str]  # "direct-to-columnstore COPY" or "classic COPY"
    peak_uncompressed_backlog: ReportBacklog
    seconds_from_last_batch_to_fully_compressed: float
    retention: list[RetentionInfo]
    continuous_aggregates_refreshed: list[RefreshedAggregate]
    verified: bool
    verified_against: NotRequired[ReportVerified]
    this_attempt_loaded_nothing: NotRequired[bool]
