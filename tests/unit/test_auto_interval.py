"""batch_interval auto: batch sizes from the source's density (pure, no database)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone

import pytest

from tidemark.errors import InvalidInput
from tidemark.flows.plan import AUTO_MAX_BATCHES, auto_interval, estimate_rows, plan_batches

UTC = timezone.utc
D0 = datetime(2024, 1, 1, tzinfo=UTC)
SIX_H = timedelta(hours=6)


def test_demo_range_gets_whole_chunks_of_about_target_rows() -> None:
    # 4 days of ledgers: 1.15 M rows -> 5 batches wanted, at least 8 -> 12 h (two 6-hour chunks each).
    assert auto_interval(D0, D0 + timedelta(days=4), 1_151_755, SIX_H) == timedelta(hours=12)


def test_dense_source_gets_smaller_batches_dividing_the_chunk() -> None:
    interval = auto_interval(D0, D0 + timedelta(hours=6), 4_000_000, SIX_H)
    assert interval < SIX_H and SIX_H % interval == timedelta(0)
    assert len(plan_batches(D0, D0 + timedelta(hours=6), interval).batches) >= 8


def test_long_range_stays_well_under_max_map_length() -> None:
    for days, rows in [(365, 105_000_000), (3650, 10**9), (3650, None)]:
        end = D0 + timedelta(days=days)
        interval = auto_interval(D0, end, rows, SIX_H)
        assert len(plan_batches(D0, end, interval).batches) <= AUTO_MAX_BATCHES
        assert interval % SIX_H == timedelta(0)


def test_without_an_estimate_one_chunk_per_batch() -> None:
    assert auto_interval(D0, D0 + timedelta(days=4), None, SIX_H) == SIX_H


def test_empty_range_is_refused() -> None:
    with pytest.raises(InvalidInput):
        auto_interval(D0, D0, 10, SIX_H)


class _CountsSource:
    def expected_counts(self, tables: Sequence[str], start: datetime, end: datetime) -> dict[str, int]:
        return {"a": int((end - start) / timedelta(seconds=1)), "b": 7}

    def read(self, tables: Sequence[str], start: datetime, end: datetime) -> Iterator[tuple[object, ...]]:
        raise AssertionError("not sampled when expected_counts exists")


class _RowsOnlySource:
    """A user source without expected_counts: one row a minute per table, as plain tuples."""

    def read(self, tables: Sequence[str], start: datetime, end: datetime) -> Iterator[tuple[object, ...]]:
        for table in tables:
            t = start.replace(second=0, microsecond=0)
            if t < start:
                t += timedelta(minutes=1)
            rows = []
            while t < end:
                rows.append((t,))
                t += timedelta(minutes=1)
            yield table, iter(rows)


def test_estimate_uses_expected_counts_when_the_source_has_them() -> None:
    assert estimate_rows([(_CountsSource(), ["a", "b"])], D0, D0 + timedelta(hours=1)) == 3600 + 7


def test_estimate_samples_a_source_without_expected_counts() -> None:
    got = estimate_rows([(_RowsOnlySource(), ["x", "y"])], D0, D0 + timedelta(days=10))
    assert got is not None and abs(got - 2 * 10 * 1440) / (2 * 10 * 1440) < 0.01


def test_estimate_is_none_for_a_source_that_cannot_say() -> None:
    class Broken:
        def read(self, tables: Sequence[str], start: datetime, end: datetime) -> Iterator[tuple[object, ...]]:
            raise RuntimeError("source offline")

    assert estimate_rows([(Broken(), ["x"])], D0, D0 + timedelta(days=1)) is None


def test_estimate_of_the_demo_dataset_is_exact() -> None:
    from tidemark.demo.ledgers import ledgers_dataset

    ds = ledgers_dataset()
    assert estimate_rows(ds.feeds(), D0, D0 + timedelta(days=4)) == 1_151_755
