"""Helpers every source shares: the optional abilities asked for by name, one-table sources' tagging.

The contract itself - what a source must do, the pieces it may yield, its
optional ``expected_counts``/``tip``/``describe`` - is documented where the
type is defined, on :class:`tidemark.model.dataset.Source`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from tidemark.errors import InvalidInput
from tidemark.model.dataset import Hypertable, Piece, RowBatch, Source

__all__ = ["Piece", "RowBatch", "Source", "describe", "each_table", "expected_counts", "only", "tip"]


def expected_counts(
    source: Source, tables: Sequence[Hypertable], start: datetime, end: datetime
) -> Mapping[str, int] | None:
    counter = getattr(source, "expected_counts", None)
    return counter(tables, start, end) if counter is not None else None


def tip(source: Source, tables: Sequence[Hypertable]) -> datetime | None:
    finder = getattr(source, "tip", None)
    return finder(tables) if finder is not None else None


def describe(source: Source) -> str:
    d = getattr(source, "describe", None)
    return d() if d is not None else type(source).__name__


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
