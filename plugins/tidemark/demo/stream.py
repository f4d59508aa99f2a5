"""``LedgerSource``: the demo's deterministic synthetic ledger stream, and what it promises.

The demo needs a stream that behaves like a real ledger chain (irregular close
times, bursty transaction counts, skewed accounts and operation types) yet is
reproducible and checkable: any window must yield identical rows in every
process, a window split into pieces must yield the same rows as the whole, and
the exact row count of any window must be known without generating it, so
tests can prove a backfill loaded everything exactly once.

This module keeps those promises at the stream's edge: time <-> sequence and
exact counts (a division plus a bisect over the seed's ``LedgerPattern``), and
the two ways to the same rows: ``rows()`` through ``rows`` (pure Python, the
reference) and ``record_batches()`` through ``columns`` (numpy into Arrow, what
the loader uses). The Tidemark source in front of it is ``tidemark.demo.synthetic``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from tidemark.demo.columns import LEDGERS_PER_RECORD_BATCH, LedgerColumns
from tidemark.demo.pattern import PERIOD, LedgerPattern, count_before
from tidemark.demo.rows import COLUMNS, GENERATORS, TABLES
from tidemark.errors import InvalidInput
from tidemark.model.timeparse import parse_instant

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["LedgerSource"]

_US = timedelta(microseconds=1)


class LedgerSource:
    """A reproducible ledger stream starting at ``epoch``, one ledger about every 5 s."""

    tables: tuple[str, ...] = TABLES
    columns: dict[str, tuple[str, ...]] = COLUMNS
    period: int = PERIOD

    def __init__(self, seed: int = 42, epoch: datetime = datetime(2020, 1, 1, tzinfo=timezone.utc)) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInput(f"seed {seed!r} must be an integer; use e.g. 42")
        self.seed = seed
        self.epoch = parse_instant(epoch)
        self.pattern = LedgerPattern(seed)
        self._columns = LedgerColumns(self.pattern, self.epoch)

    # -- time <-> sequence -------------------------------------------------

    def close_time(self, sequence: int) -> datetime:
        """Close time of ledger ``sequence`` (>= 0)."""
        if sequence < 0:
            raise ValueError(f"ledger sequence {sequence} is negative; sequences start at 0")
        periods, i = divmod(sequence, PERIOD)
        return self.epoch + timedelta(milliseconds=periods * self.pattern.period_ms + self.pattern.offsets[i])

    def first_sequence_at_or_after(self, t: str | datetime) -> int:
        """Smallest sequence whose close time is >= ``t``; 0 for any ``t`` before the epoch."""
        delta_us = (parse_instant(t) - self.epoch) // _US
        if delta_us <= 0:
            return 0
        ms = -(-delta_us // 1000)
        periods, rest = divmod(ms, self.pattern.period_ms)
        return periods * PERIOD + bisect.bisect_left(self.pattern.offsets, rest, 0, PERIOD)

    def sequence_range(self, start: str | datetime, end: str | datetime) -> range:
        """Sequences of the ledgers closing in ``[start, end)`` (empty if end <= start)."""
        first = self.first_sequence_at_or_after(start)
        stop = self.first_sequence_at_or_after(end)
        return range(first, max(first, stop))

    # -- counts ------------------------------------------------------------

    def expected_counts(self, start: str | datetime, end: str | datetime) -> dict[str, int]:
        """Exact row counts per table for ``[start, end)`` without generating rows."""
        seqs = self.sequence_range(start, end)
        tx_prefix, op_prefix = self.pattern.tx_prefix, self.pattern.op_prefix
        return {
            "ledgers": len(seqs),
            "transactions": count_before(tx_prefix, seqs.stop) - count_before(tx_prefix, seqs.start),
            "operations": count_before(op_prefix, seqs.stop) - count_before(op_prefix, seqs.start),
        }

    # -- rows, two ways ----------------------------------------------------

    def rows(self, table: str, start: str | datetime, end: str | datetime) -> Iterator[tuple[Any, ...]]:
        """Rows of ``table`` whose close_time is in ``[start, end)``, in key order.

        Not a generator itself so that an unknown table fails at the call,
        not at the first ``next()`` deep inside a loader.
        """
        _check_table(table)
        return GENERATORS[table](self.pattern, self.epoch, self.sequence_range(start, end))

    def record_batches(
        self, table: str, start: str | datetime, end: str | datetime, ledgers_per_batch: int = LEDGERS_PER_RECORD_BATCH
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``rows(table, start, end)`` as Arrow record batches, equal value for value.

        Each batch covers ``ledgers_per_batch`` ledgers. Needs numpy and pyarrow
        (``tidemark[parquet]``); ``tidemark.load.arrow_data.available()`` says whether they are there.
        """
        _check_table(table)
        return self._columns.batches(table, self.sequence_range(start, end), ledgers_per_batch)


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; LedgerSource has tables {', '.join(TABLES)}")
