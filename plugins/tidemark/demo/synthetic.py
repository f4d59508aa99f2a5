"""The demo's ``synthetic`` source kind: the ledger stream (``stream.LedgerSource``) as a Tidemark source.

A module of its own because it is the one piece of the demo that speaks the
source contract (``tidemark.sources.base``): which form the rows take on the
way to the loader, exact counts per declared table, the tip. How the stream
is generated lives in ``stream``, ``pattern``, ``rows`` and ``columns``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from tidemark.demo.stream import LedgerSource

if TYPE_CHECKING:
    from tidemark.model.dataset import Hypertable

__all__ = ["SyntheticLedgers", "ledger_source"]


class SyntheticLedgers:
    """The ledger stream as a Tidemark source: one object feeds all three tables, counts exactly.

    Its tip is now: the stream is unbounded, like a live chain.
    """

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed
        self._stream: LedgerSource | None = None

    @property
    def stream(self) -> LedgerSource:
        # Built on first use (~0.1 s), not at DAG parse time.
        if self._stream is None:
            self._stream = LedgerSource(seed=self.seed)
        return self._stream

    def read(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> Iterator[tuple[str, Any]]:
        from tidemark.load import arrow_data

        if not arrow_data.available():  # tuples: the same rows, only slower to encode
            for table in tables:
                yield table.name, self.stream.rows(table.name, start, end)
            return
        for table in tables:
            for batch in self.stream.record_batches(table.name, start, end):
                yield table.name, batch

    def expected_counts(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> dict[str, int]:
        counts = self.stream.expected_counts(start, end)
        return {t.name: counts[t.name] for t in tables}

    def tip(self, tables: Sequence[Hypertable]) -> datetime:
        return datetime.now(timezone.utc)

    def describe(self) -> str:
        return f"synthetic ledger stream (seed {self.seed})"


@functools.lru_cache(maxsize=8)
def ledger_source(seed: int = 42) -> SyntheticLedgers:
    """One source per seed and process: its period tables are built once, and it only reads them after."""
    return SyntheticLedgers(seed)
