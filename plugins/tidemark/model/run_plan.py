"""The run's plan: made once by the plan task, carried across XCom, read by every later step.

Every step after planning (a batch, the sensor, finalize, publish, the UI)
works from the same batches with the same windows and indexes, so none of
them re-derives the plan from the interval string (which could disagree
with what was planned, e.g. after a rerun skipped loaded windows). XCom
carries plain JSON: :meth:`RunPlan.to_payload` writes it, and
:meth:`RunPlan.of` reads it back at each task's boundary, refusing a value
of another shape with a message instead of a KeyError deep in a task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from tidemark.errors import TidemarkError
from tidemark.model.batch import Batch
from tidemark.model.payloads import BatchPayload, PlanPayload, RetentionInfo
from tidemark.model.timeparse import format_interval, parse_instant, parse_interval

__all__ = ["BACKFILL", "CATCHUP", "PayloadMismatch", "RunPlan"]

BACKFILL = "backfill"
CATCHUP = "catchup"


class PayloadMismatch(TidemarkError):
    """An XCom value does not have the shape this Tidemark version pushes."""


@dataclass(frozen=True)
class RunPlan:
    """What one run loads: its dataset, range, batches (to load) and skipped windows (already loaded)."""

    run_id: str
    dataset: str
    start: datetime
    end: datetime
    batch_interval: timedelta
    batches: tuple[Batch, ...]
    skipped: tuple[tuple[datetime, datetime], ...] = ()
    kind: str = BACKFILL
    dry_run: bool = False
    retention: tuple[RetentionInfo, ...] = ()
    # Tables written by direct-to-columnstore COPY, and whether their chunks are recompressed behind the
    # watermark (only when several batches write into each chunk).
    direct_compress: tuple[str, ...] = ()
    recompress_unordered: bool = False
    # Catchup only: the staging schema and the batches already in it when the run was planned.
    staging: str | None = None
    already_staged: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        for position, b in enumerate(self.batches):
            if b.index != position:
                raise PayloadMismatch(f"batch at position {position} has index {b.index}: a plan's batches are 0..n-1")

    @property
    def total_windows(self) -> int:
        return len(self.batches) + len(self.skipped)

    @property
    def windows(self) -> list[tuple[datetime, datetime]]:
        """Every window of the range, loaded now or skipped as loaded before, in time order."""
        return sorted([(b.start, b.end) for b in self.batches] + list(self.skipped))

    def batch(self, index: int) -> Batch:
        return self.batches[index]

    def batch_payloads(self) -> list[BatchPayload]:
        """What the mapped batch tasks are expanded over (nothing in a dry run)."""
        return [] if self.dry_run else [b.to_dict() for b in self.batches]

    def describe(self) -> str:
        return (
            f"{self.dataset} [{self.start.isoformat()}, {self.end.isoformat()}) "
            f"in batches of {format_interval(self.batch_interval)}"
        )

    def to_payload(self) -> PlanPayload:
        payload: PlanPayload = {
            "run_id": self.run_id,
            "dataset": self.dataset,
            "kind": self.kind,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "batch_interval": format_interval(self.batch_interval),
            "batches": [[b.start.isoformat(), b.end.isoformat()] for b in self.batches],
            "skipped": [[s.isoformat(), e.isoformat()] for s, e in self.skipped],
            "total_windows": self.total_windows,
            "skipped_windows": len(self.skipped),
            "planned_batches": len(self.batches),
            "dry_run": self.dry_run,
            "retention": list(self.retention),
            "direct_compress": list(self.direct_compress),
            "recompress_unordered": self.recompress_unordered,
        }
        if self.staging is not None:
            payload["staging"] = self.staging
            payload["already_staged"] = list(self.already_staged)
        return payload

    @classmethod
    def of(cls, value: RunPlan | Mapping[str, Any]) -> RunPlan:
        """The plan itself, or read back from its XCom payload."""
        if isinstance(value, RunPlan):
            return value
        if not isinstance(value, Mapping):
            raise PayloadMismatch(f"the plan is a {type(value).__name__}, not a JSON object")
        required: frozenset[str] = PlanPayload.__required_keys__
        missing = sorted(required - set(value))
        if missing:
            raise PayloadMismatch(
                f"the plan lacks {', '.join(missing)}; it was not made by this Tidemark version's plan task"
            )
        p = cast(PlanPayload, value)
        try:
            return cls(
                run_id=str(p["run_id"]),
                dataset=str(p["dataset"]),
                kind=str(p["kind"]),
                start=parse_instant(p["start"]),
                end=parse_instant(p["end"]),
                batch_interval=parse_interval(p["batch_interval"]),
                batches=tuple(Batch(i, parse_instant(s), parse_instant(e)) for i, (s, e) in enumerate(p["batches"])),
                skipped=tuple((parse_instant(s), parse_instant(e)) for s, e in p["skipped"]),
                dry_run=p["dry_run"] is True,
                retention=tuple(p.get("retention") or ()),
                direct_compress=tuple(p.get("direct_compress") or ()),
                recompress_unordered=p.get("recompress_unordered") is True,
                staging=p.get("staging"),
                already_staged=tuple(int(i) for i in p.get("already_staged") or ()),
            )
        except (TypeError, ValueError) as exc:
            raise PayloadMismatch(f"the plan does not read back: {exc}") from None

    def batch_of(self, value: Batch | Mapping[str, Any]) -> Batch:
        """One mapped task's batch (its XCom payload), checked against this plan's batch of that index."""
        b = value if isinstance(value, Batch) else Batch.from_dict(value)
        if not 0 <= b.index < len(self.batches) or self.batches[b.index] != b:
            raise PayloadMismatch(f"batch {b.label} is not batch {b.index} of the run's plan")
        return b


def windows_of(plan: RunPlan, indexes: Sequence[int]) -> str:
    """The labels of these batches, for messages (at most ten)."""
    labels = ", ".join(plan.batch(i).label for i in indexes[:10] if 0 <= i < len(plan.batches))
    more = f" and {len(indexes) - 10} more" if len(indexes) > 10 else ""
    return labels + more
