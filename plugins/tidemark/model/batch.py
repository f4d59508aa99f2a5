"""A batch: one half-open time window that one task loads, the unit of the plan, the ledger and the watermark."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tidemark.errors import InvalidInput
from tidemark.model.payloads import BatchPayload
from tidemark.model.timeparse import parse_instant

__all__ = ["Batch"]


@dataclass(frozen=True, order=True)
class Batch:
    """One half-open window ``[start, end)`` that a single mapped task loads."""

    index: int
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        # Naive or reversed windows would silently corrupt skip detection and
        # watermarks downstream, so refuse them at construction.
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"batch #{self.index} needs timezone-aware start and end")
        if not self.start < self.end:
            raise ValueError(
                f"batch #{self.index} start {self.start.isoformat()} is not before "
                f"end {self.end.isoformat()}"
            )

    def to_dict(self) -> BatchPayload:
        """Plain JSON types only, because the batch is pushed through XCom."""
        return {"index": self.index, "start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Batch:
        """Rebuild a batch pulled from XCom, tolerating datetime or ISO-string fields."""
        missing = [key for key in ("index", "start", "end") if key not in d]
        if missing:
            raise InvalidInput(
                f"batch {dict(d)!r} lacks {', '.join(missing)}; pass the dict made by Batch.to_dict()"
            )
        index = d["index"]
        if isinstance(index, bool) or not isinstance(index, int):
            raise InvalidInput(
                f"batch index {index!r} must be an integer; pass the dict made by Batch.to_dict()"
            )
        return cls(index=index, start=parse_instant(d["start"]), end=parse_instant(d["end"]))

    @property
    def label(self) -> str:
        """Short window shown as the mapped task's name in the Airflow UI."""
        with_seconds = any(t.second or t.microsecond for t in (self.start, self.end))
        clock = "%H:%M:%S" if with_seconds else "%H:%M"
        start_text = self.start.strftime(f"%Y-%m-%d {clock}")
        if self.end.date() == self.start.date():
            end_text = self.end.strftime(clock)
        else:
            end_text = self.end.strftime(f"%Y-%m-%d {clock}")
        return f"#{self.index} {start_text} → {end_text}"
