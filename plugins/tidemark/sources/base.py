"""Helpers every source shares: the optional abilities asked for by name, one-table sources' tagging.

The contract itself - what a source must do, the pieces it may yield - is
documented where the type is defined, on :class:`tidemark.model.dataset.Source`;
its optional abilities are the typed protocols here (``CountsRows``,
``KnowsTip``, ``Describes``, ``ChecksBeforeLoad``), asked with ``isinstance`` so mypy checks both sides.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from tidemark.errors import InvalidInput, SourceRefused
from tidemark.model.dataset import Dataset, Hypertable, Piece, RowBatch, Source

__all__ = [
    "ChecksBeforeLoad", "CountsRows", "Describes", "KnowsTip", "Piece", "RowBatch", "Source", "check_before_load",
    "describe", "each_table", "expected_counts", "only", "tip",
]


@runtime_checkable
class CountsRows(Protocol):
    """A source that can count a window's rows cheaply: verification then checks the tables against it too."""

    def expected_counts(
        self, tables: Sequence[Hypertable], start: datetime, end: datetime
    ) -> Mapping[str, int] | None: ...


@runtime_checkable
class KnowsTip(Protocol):
    """A source that knows how far its data reaches: live ingestion and its hand-over to catchup need it."""

    def tip(self, tables: Sequence[Hypertable]) -> datetime | None: ...


@runtime_checkable
class Describes(Protocol):
    """A source with a one-line, secret-free description for logs and reports."""

    def describe(self) -> str: ...


@runtime_checkable
class ChecksBeforeLoad(Protocol):
    """A source that can tell, before anything is written, that it could never serve its tables as declared.

    ``check`` raises ``InvalidInput`` naming the table and the source's key
    to fix (a query that cannot be prepared, lacks columns, a file without the
    time column); it must not write, and should cost far less than a batch.
    Backfill and catchup plans ask it before their first write, so such a
    source fails the plan once instead of every batch.
    """

    def check(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> None: ...


def check_before_load(dataset: Dataset, start: datetime, end: datetime) -> None:
    """Ask every source of ``dataset`` that can check itself; SourceRefused naming the dataset if one refuses."""
    for source, tables in dataset.feeds():
        if isinstance(source, ChecksBeforeLoad):
            try:
                source.check(tables, start, end)
            except InvalidInput as exc:
                raise SourceRefused(f"dataset {dataset.name!r}: {exc}") from None


def expected_counts(
    source: Source, tables: Sequence[Hypertable], start: datetime, end: datetime
) -> Mapping[str, int] | None:
    return source.expected_counts(tables, start, end) if isinstance(source, CountsRows) else None


def tip(source: Source, tables: Sequence[Hypertable]) -> datetime | None:
    return source.tip(tables) if isinstance(source, KnowsTip) else None


def describe(source: Source) -> str:
    return source.describe() if isinstance(source, Describes) else type(source).__name__


def only(tables: Sequence[Hypertable]) -> Hypertable:
    """The single table a table-level source feeds (it may be given only one)."""
    if len(tables) != 1:
        raise InvalidInput(f"this source feeds exactly one table, not {[t.name for t in tables]}")
    return tables[0]


def each_table(tables: Sequence[Hypertable], pieces: Iterator[Any]) -> Iterator[Piece]:
    """Tag every piece of a one-table source with that table's name."""
    name = only(tables).name
    for piece in pieces:
        yield name, piece
