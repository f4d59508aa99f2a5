"""One table's share of one batch window: what a piece is checked against, and how a refusal names it.

The row checks and the Arrow checks take this rather than the encoder that
calls them, so they depend on what a message needs and nothing above it.
Every refusal names the dataset, table and window, and counts rows across the
window's pieces, so the row number points into the source as a whole.
"""

from __future__ import annotations

from datetime import datetime

from tidemark.errors import BadRow
from tidemark.model.column_types import ColumnType
from tidemark.model.dataset import Column, Hypertable


class TableWindow:
    """The table's columns and the window's bounds; ``row`` counts the rows encoded before the current piece."""

    def __init__(self, dataset: str, table: Hypertable, start: datetime, end: datetime) -> None:
        self.dataset = dataset
        self.table = table
        self.start = start
        self.end = end
        self.columns: tuple[Column, ...] = table.cols
        self.kinds: list[ColumnType] = [c.parsed for c in self.columns]
        self.names = table.column_names
        self.time_index = table.time_index
        self.row = 0

    def where(self) -> str:
        return (
            f"dataset {self.dataset!r}, table {self.table.qualified}, window "
            f"[{self.start.isoformat()}, {self.end.isoformat()})"
        )

    def bad(self, detail: str, origin: str = "") -> BadRow:
        return BadRow(f"{self.where()}: {detail}" + (f" (in {origin})" if origin else ""))
