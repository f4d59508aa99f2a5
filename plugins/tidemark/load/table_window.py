"""One table's share of one batch window: what a piece is checked against, and how a refusal names it.

The row checks and the Arrow checks take this rather than the encoder that
calls them, so they depend on what a message needs and nothing above it.
Every refusal names the dataset, table and window, then the row: where the
source knows it (an :class:`~tidemark.model.origin.Origin`), its file and its
own line (or Parquet row group and row); else its number among the window's
rows from that source. Its time is added where the row has a valid one, and
the value refused is quoted cut short (``origin.shown``), never the whole row.
"""

from __future__ import annotations

from datetime import datetime

from tidemark.errors import BadRow
from tidemark.model.column_types import ColumnType
from tidemark.model.dataset import Column, Hypertable
from tidemark.model.origin import Origin


def place(origin: Origin | str, index: int, window_row: int) -> str:
    """Where a row is: ``index`` counts the rows of its piece, ``window_row`` those of the window (both from 0)."""
    if isinstance(origin, Origin):
        spot = origin.place(index)
        if spot is not None:
            return f"{origin.where} {spot}"
    text = f"row {window_row + 1} of the window"
    return text + (f" from {origin}" if str(origin) else "")


class TableWindow:
    """The table's columns and the window's bounds.

    ``row`` counts the rows encoded before the current chunk, ``piece_start``
    the rows encoded before the current piece: a row's index in its piece is
    ``row + n - piece_start``.
    """

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
        self.piece_start = 0

    def where(self) -> str:
        return (
            f"dataset {self.dataset!r}, table {self.table.qualified}, window "
            f"[{self.start.isoformat()}, {self.end.isoformat()})"
        )

    def at(self, n: int, origin: Origin | str, time: object = None) -> str:
        """Row ``n`` of the current chunk, as a refusal names it, with its time if ``time`` is a valid one."""
        text = place(origin, self.row + n - self.piece_start, self.row + n)
        if isinstance(time, datetime) and time.utcoffset() is not None:
            text += f" ({self.table.time_column}={time.isoformat()})"
        return text

    def bad(self, detail: str, origin: Origin | str = "", n: int | None = None, time: object = None) -> BadRow:
        """A refusal of row ``n`` of the current chunk, or of the piece as a whole when ``n`` is None."""
        if n is None:
            return BadRow(f"{self.where()}: {detail}" + (f" (in {origin})" if str(origin) else ""))
        return BadRow(f"{self.where()}: {self.at(n, origin, time)}: {detail}")
