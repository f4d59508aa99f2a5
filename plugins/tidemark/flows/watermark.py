"""The backfill watermark: how far back-to-front data is known to be complete.

Mapped batches finish in any order, but consumers (continuous aggregates,
downstream readers) need a single instant before which nothing is missing.
That instant is the end of the longest contiguous prefix of finished batches,
so a batch that finishes early never moves the watermark past a gap, and one
stuck batch holds it back however many later ones succeed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from tidemark.model.batch import Batch

__all__ = ["Watermark", "compute_watermark", "advance"]


@dataclass(frozen=True)
class Watermark:
    """Batches ``0..completed-1`` are done; data before ``time`` is complete."""

    completed: int
    total: int
    time: datetime

    @property
    def last_index(self) -> int:
        """Index of the last batch inside the complete prefix, -1 when none is."""
        return self.completed - 1

    @property
    def complete(self) -> bool:
        """True once every planned batch is inside the prefix."""
        return self.completed == self.total


def compute_watermark(
    done: Iterable[int], batches: Sequence[Batch], *, start: datetime | None = None
) -> Watermark:
    """Watermark from scratch for the set of finished batch indexes ``done``.

    ``start`` is where the watermark sits before any batch finishes; it
    defaults to the first batch's start and is needed only for an empty plan.
    """
    if start is None:
        if not batches:
            raise ValueError("compute_watermark needs start= when there are no batches")
        start = batches[0].start
    _check_indexes(batches)
    finished = _as_checked_set(done, len(batches))
    return _extend(Watermark(completed=0, total=len(batches), time=start), finished, batches)


def advance(previous: Watermark, done: Collection[int], batches: Sequence[Batch]) -> Watermark:
    """Continue from a persisted watermark without rescanning the finished prefix.

    Because ``done`` only ever grows, batches ``0..previous.completed-1`` are
    already known finished; scanning resumes at ``previous.completed`` and
    yields exactly what ``compute_watermark`` would.
    """
    if previous.total != len(batches):
        raise ValueError(
            f"previous watermark covers {previous.total} batches but the plan has "
            f"{len(batches)}; recompute it with compute_watermark"
        )
    finished = _as_checked_set(done, len(batches))
    return _extend(previous, finished, batches)


def _extend(current: Watermark, finished: Collection[int], batches: Sequence[Batch]) -> Watermark:
    k = current.completed
    n = len(batches)
    while k < n and k in finished:
        k += 1
    if k == current.completed:
        return current
    return Watermark(completed=k, total=n, time=batches[k - 1].end)


def _as_checked_set(done: Iterable[int], n: int) -> Collection[int]:
    finished = done if isinstance(done, (set, frozenset)) else set(done)
    for index in finished:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise ValueError(f"batch index {index!r} is outside the plan's range 0..{n - 1}")
    return finished


def _check_indexes(batches: Sequence[Batch]) -> None:
    # ``done`` holds Batch.index values while the prefix is positional; they
    # agree only for a plan re-indexed 0..n-1, so refuse anything else.
    for position, batch in enumerate(batches):
        if batch.index != position:
            raise ValueError(
                f"batch at position {position} has index {batch.index}; pass the plan's "
                f"batches in order (indexes 0..n-1)"
            )
