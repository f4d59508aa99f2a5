"""Cut a backfill range into fixed, start-aligned batches and drop the loaded ones.

Batches become Airflow mapped task instances, so the plan must be (1) small
enough for Airflow's ``max_map_length``, (2) deterministic for a given range and
interval, so a rerun produces the same windows and can recognise the ones an
earlier run already loaded, and (3) JSON-serialisable, because each batch
travels through XCom.  All validation happens before any planning so a bad
trigger fails fast with a message saying what to change.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from tidemark.errors import InvalidInput
from tidemark.model.batch import Batch
from tidemark.model.timeparse import format_interval, parse_instant, parse_interval

__all__ = [
    "AUTO", "LATEST_END", "MAX_BATCHES", "Batch", "Plan", "auto_interval", "check_range", "check_span", "estimate_rows",
    "plan_batches",
]

MAX_BATCHES = 1024  # Airflow's default max_map_length

# The latest end a run may have. Python's datetimes stop at 9999-12-31T23:59:59.999999, and a run reaches past
# its end (its last window's aligned end, the chunks holding its last rows, read back as datetimes): a year
# of headroom keeps every one of them a datetime.
LATEST_END = datetime(9999, 1, 1, tzinfo=timezone.utc)

AUTO = "auto"
# batch_interval "auto": aim for this many rows per batch. At ~0.2 s of Airflow cost per task under
# `airflow dags test` (and 1-3 s per task process under a scheduler, spread over the parallel
# loaders), a batch of 250,000 rows (~1.5 s of COPY on the embedded engine) keeps that cost near 10%.
AUTO_TARGET_ROWS = 250_000
# ... but at least this many batches, so parallel loaders and progressive compression overlap ...
AUTO_MIN_BATCHES = 8
# ... and well under Airflow's max_map_length: a longer range gets bigger batches instead.
AUTO_MAX_BATCHES = 256

_US = timedelta(microseconds=1)
_MINUTE_US = 60_000_000
_HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class Plan:
    """The batches still to load plus what was skipped, for reporting."""

    start: datetime
    end: datetime
    interval: timedelta
    batches: tuple[Batch, ...]
    skipped: tuple[tuple[datetime, datetime], ...]
    total_windows: int


def plan_batches(
    start: str | datetime,
    end: str | datetime,
    interval: str | timedelta,
    *,
    loaded: Iterable[tuple[str | datetime, str | datetime]] = (),
    max_batches: int = MAX_BATCHES,
) -> Plan:
    """Plan ``[start, end)`` in ``interval`` steps, skipping windows already loaded.

    Windows are aligned to ``start`` (not to the epoch) so the first batch
    begins exactly where the user asked; the last one is clipped to ``end``.
    A window counts as loaded only if the union of ``loaded`` covers it
    entirely: partially loaded windows are reloaded, which is safe because
    loads are idempotent per window.
    """
    start_at = parse_instant(start)
    end_at = parse_instant(end)
    step = parse_interval(interval)
    count = check_range(start_at, end_at, step, max_batches)
    covered = _merge(_parse_loaded(loaded))
    covered_starts = [window[0] for window in covered]

    batches: list[Batch] = []
    skipped: list[tuple[datetime, datetime]] = []
    for i in range(count):
        window_start = start_at + step * i
        window_end = end_at if end_at - window_start <= step else window_start + step  # never past end: no overflow
        if _is_covered(window_start, window_end, covered, covered_starts):
            skipped.append((window_start, window_end))
        else:
            batches.append(Batch(len(batches), window_start, window_end))
    return Plan(
        start=start_at,
        end=end_at,
        interval=step,
        batches=tuple(batches),
        skipped=tuple(skipped),
        total_windows=count,
    )


def check_range(start: datetime, end: datetime, step: timedelta, max_batches: int = MAX_BATCHES) -> int:
    """How many windows ``[start, end)`` makes at ``step``; InvalidInput saying what to change if it cannot be planned.

    The request checks this before any write, the plan task plans from it:
    the same rule, so a range accepted at trigger time always plans.
    """
    if isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1:
        raise InvalidInput(f"max_batches {max_batches!r} must be a positive integer; use e.g. {MAX_BATCHES}")
    check_span(start, end)
    span_us = (end - start) // _US
    count = -(-span_us // (step // _US))
    if count > max_batches:
        raise InvalidInput(_too_many_message(start, end, step, count, span_us, max_batches))
    return count


def check_span(start: datetime, end: datetime) -> None:
    """InvalidInput unless ``start < end <= LATEST_END``: a range that can be planned at any interval."""
    if not start < end:
        raise InvalidInput(
            f"start {start.isoformat()} must be before end {end.isoformat()}; "
            f"swap them or move end later"
        )
    if end > LATEST_END:
        raise InvalidInput(
            f"end {end.isoformat()} is later than {LATEST_END.isoformat()}, the latest end Tidemark plans (dates stop "
            "at 9999-12-31, and a run's windows and chunks reach beyond its end); move end earlier"
        )


def _too_many_message(
    start: datetime, end: datetime, step: timedelta, count: int, span_us: int, max_batches: int
) -> str:
    # Suggest the smallest comfortable interval that fits, rounded up so the
    # number is something a person would type (whole minutes, or whole hours
    # once above an hour); rounding up can only lower the window count.
    needed_us = -(-span_us // max_batches)
    unit = _MINUTE_US if needed_us <= _HOUR_US else _HOUR_US
    suggested = timedelta(microseconds=-(-needed_us // unit) * unit)
    parts = -(-count // max_batches)
    return (
        f"range {start.isoformat()} → {end.isoformat()} at a batch interval of "
        f"{format_interval(step)!r} makes {count} batches, more than the limit of "
        f"{max_batches} (Airflow's max_map_length); use a batch interval of at least "
        f"{format_interval(suggested)!r}, or split the range into {parts} backfills of "
        f"at most {format_interval(step * max_batches)!r} each"
    )


def _parse_loaded(
    loaded: Iterable[tuple[str | datetime, str | datetime]],
) -> list[tuple[datetime, datetime]]:
    windows: list[tuple[datetime, datetime]] = []
    for pair in loaded:
        try:
            raw_start, raw_end = pair
        except (TypeError, ValueError):
            raise InvalidInput(
                f"loaded window {pair!r} must be a (start, end) pair; pass e.g. "
                f"[('2024-01-01', '2024-01-02')]"
            ) from None
        window_start = parse_instant(raw_start)
        window_end = parse_instant(raw_end)
        if window_end < window_start:
            raise InvalidInput(
                f"loaded window start {window_start.isoformat()} is after its end "
                f"{window_end.isoformat()}; swap them"
            )
        if window_end > window_start:
            windows.append((window_start, window_end))
    return windows


def _merge(windows: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Union of half-open windows; touching windows join so adjacent loads cover a batch."""
    merged: list[tuple[datetime, datetime]] = []
    for window_start, window_end in sorted(windows):
        if merged and window_start <= merged[-1][1]:
            if window_end > merged[-1][1]:
                merged[-1] = (merged[-1][0], window_end)
        else:
            merged.append((window_start, window_end))
    return merged


def _is_covered(
    start: datetime,
    end: datetime,
    covered: list[tuple[datetime, datetime]],
    covered_starts: list[datetime],
) -> bool:
    # Merged windows are disjoint, so only the last one starting at or before
    # ``start`` can contain the whole window.
    position = bisect.bisect_right(covered_starts, start) - 1
    return position >= 0 and covered[position][1] >= end


def estimate_rows(
    feeds: Iterable[tuple[Any, Sequence[Any]]], start: datetime, end: datetime, *, samples: int = 3,
    sample_span: timedelta = timedelta(hours=1),
) -> int | None:
    """Rows the sources hold in [start, end): exact where a source offers ``expected_counts``, else sampled.

    ``feeds`` pairs each source with the tables it fills (``Dataset.feeds()``).
    Sampling reads ``samples`` short windows spread over the range and
    extrapolates (sources are deterministic per window anyway). None when a
    source can say neither (its count or read fails, or the samples are empty).
    """
    total = 0
    span = end - start
    width = min(sample_span, span / samples)
    for source, tables in feeds:
        counter = getattr(source, "expected_counts", None)
        if callable(counter):
            try:
                counts = counter(tables, start, end)
            except Exception:  # noqa: BLE001 - an estimate is optional: sample instead
                counts = None
            if counts is not None:
                total += int(sum(counts.values()))
                continue
        seen = 0
        try:
            for k in range(samples):
                s0 = start + (span - width) * (k / max(1, samples - 1))
                for piece in source.read(tables, s0, s0 + width):
                    seen += _rows_in(piece[1])
        except Exception:  # noqa: BLE001 - cannot sample: the caller falls back to one chunk per batch
            return None
        if seen == 0:
            return None
        total += int(seen * (span / (width * samples)))
    return total


def _rows_in(data: Any) -> int:
    """Rows in one piece a source yields: Arrow/pandas (``num_rows``/len), a RowBatch, or rows."""
    rows = getattr(data, "num_rows", None)
    if isinstance(rows, int):
        return rows
    inner = getattr(data, "rows", None)
    if inner is not None and not callable(inner):
        return len(inner)
    try:
        return len(data)
    except TypeError:
        return sum(1 for _ in data)


def auto_interval(
    start: datetime,
    end: datetime,
    total_rows: int | None,
    chunk_interval: timedelta,
    *,
    target_rows: int = AUTO_TARGET_ROWS,
    min_batches: int = AUTO_MIN_BATCHES,
    max_batches: int = AUTO_MAX_BATCHES,
) -> timedelta:
    """A batch interval for ``batch_interval: auto``, from the source's density.

    Each batch should carry about ``target_rows`` rows, the run should have at
    least ``min_batches`` and at most ``max_batches`` batches, and the interval
    is a whole multiple of the hypertables' chunk interval (or an even divisor
    of it, in whole minutes) so that each chunk is written by as few batches
    as possible: one, when the range starts on a chunk boundary. Without an
    estimate (``total_rows`` None) one chunk interval per batch, within the
    same bounds.
    """
    span = end - start
    if span <= timedelta(0):
        raise InvalidInput(f"start {start.isoformat()} must be before end {end.isoformat()}")
    wanted = -(-total_rows // target_rows) if total_rows else -(-span // chunk_interval)
    count = max(1, min(max(wanted, min_batches), max_batches))
    raw = span / count
    if raw >= chunk_interval:
        interval = chunk_interval * max(1, round(raw / chunk_interval))
    else:
        parts = -(-chunk_interval // raw)
        minutes = int(chunk_interval.total_seconds() // 60)
        # The first even divisor of the chunk in whole minutes at or above the wanted number of parts.
        even = next((p for p in range(parts, 2 * parts + 1) if minutes and minutes % p == 0), None)
        interval = max(timedelta(minutes=1), _floor_minutes(chunk_interval / (even or parts)))
    while -(-span // interval) > min(max_batches, MAX_BATCHES):
        interval *= 2
    return interval


def _floor_minutes(t: timedelta) -> timedelta:
    return timedelta(minutes=int(t.total_seconds() // 60))
