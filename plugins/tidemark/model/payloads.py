"""The shapes of what crosses XCom between the backfill's tasks: one definition for producer and consumer.

XCom carries plain JSON, so these are TypedDicts (JSON objects with known
keys), not dataclasses: what plan pushes is exactly what insert_batch, the
sensor and finalize pull, and mypy checks both ends against the same type.
``check_*`` validate a pulled value at the boundary, so a payload of the
wrong shape (an XCom from an older Tidemark, a hand-made dict in a drill)
fails with a message naming the missing keys instead of a KeyError deep in
a task.
"""

# No `from __future__ import annotations`: TypedDict must see NotRequired[...] itself (not as a string)
# for __required_keys__, which check_* use, to be right.
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypedDict, cast

from tidemark.errors import TidemarkError

if TYPE_CHECKING:
    from tidemark.model.batch import Batch

__all__ = [
    "BatchPayload", "BatchResultPayload", "Planned", "Report", "RetentionInfo", "Summary",
    "batch_payload", "check_batch", "check_result", "check_summary", "result_payload",
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


class Summary(TypedDict):
    """Plan's XCom ``summary``: everything the later tasks need to know about the run."""

    run_id: str
    dataset: str
    start: str
    end: str
    batch_interval: str
    total_windows: int
    skipped_windows: int
    planned_batches: int
    dry_run: bool
    retention: NotRequired[list[RetentionInfo]]  # absent in summaries of runs planned before it existed
    would_load: NotRequired[list[BatchPayload]]  # dry runs only
    # Tables written by direct-to-columnstore COPY (tidemark.timescale.columnstore), and whether their chunks are
    # recompressed behind the watermark; absent in summaries planned before the mode existed (classic).
    direct_compress: NotRequired[list[str]]
    recompress_unordered: NotRequired[bool]


class Planned(TypedDict):
    batches: list[BatchPayload]
    summary: Summary


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


class ReportChunks(TypedDict):
    in_window: int
    compressed: int
    compressed_during_load: int
    compressed_by_sensor_after_last_batch: int
    compressed_in_final_pass: int
    left_for_live_ingestion: list[str]


class ReportBytes(TypedDict):
    before_compression: int
    after_compression: int
    ratio: float | None
    written_compressed: NotRequired[int]  # chunks direct COPY wrote compressed: their size (no "before")


class ReportBacklog(TypedDict):
    chunks: int
    bytes: int


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


class _LoadedBatch(Protocol):
    """What a loader's result offers (tidemark.load.loader.BatchResult): read by attribute, not by its to_dict."""

    @property
    def index(self) -> int: ...
    @property
    def rows(self) -> dict[str, int]: ...
    @property
    def seconds(self) -> float: ...
    @property
    def generate_seconds(self) -> float: ...
    @property
    def db_seconds(self) -> float: ...
    @property
    def attempts(self) -> int: ...


def batch_payload(batch: "Batch") -> BatchPayload:
    return {"index": batch.index, "start": batch.start.isoformat(), "end": batch.end.isoformat()}


def result_payload(batch: "Batch", result: _LoadedBatch) -> BatchResultPayload:
    return {
        "index": result.index, "start": batch.start.isoformat(), "end": batch.end.isoformat(),
        "rows": {str(k): int(v) for k, v in result.rows.items()}, "seconds": float(result.seconds),
        "generate_seconds": float(result.generate_seconds), "db_seconds": float(result.db_seconds),
        "attempts": int(result.attempts),
    }


class PayloadMismatch(TidemarkError):
    """An XCom value does not have the shape this Tidemark version pushes."""


def _check(kind: type[Any], what: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadMismatch(f"{what} is a {type(value).__name__}, not a JSON object")
    required: frozenset[str] = kind.__required_keys__
    missing = sorted(required - set(value))
    if missing:
        raise PayloadMismatch(f"{what} lacks {', '.join(missing)}; it was not made by this Tidemark version's plan")
    return value


def check_summary(value: object) -> Summary:
    return cast(Summary, _check(Summary, "summary", value))


def check_batch(value: object) -> BatchPayload:
    return cast(BatchPayload, _check(BatchPayload, "batch", value))


def check_result(value: object) -> BatchResultPayload:
    return cast(BatchResultPayload, _check(BatchResultPayload, "batch result", value))
