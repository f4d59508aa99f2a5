"""Encoded rows held per table and COPY format until the write, in memory up to a few MiB, then on disk.

A batch's memory does not grow with its size, and the source is read once
even when the write is retried: the retry sends the spool again. Each spool
keeps one small record per piece appended (how many rows, where they came
from), so the row the server refuses at COPY line N is named by its place in
the source (``row``).
"""

from __future__ import annotations

import csv
import tempfile
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, NamedTuple

from tidemark.load.copy_binary import BINARY_HEADER, BINARY_TRAILER
from tidemark.model.dataset import Hypertable
from tidemark.model.origin import Origin

SPOOL_IN_MEMORY = 8 * 1024 * 1024


class Segment(NamedTuple):
    """Rows appended together: where they came from, the first one's index in its piece and in the window."""

    origin: Origin | str
    piece_index: int
    window_row: int


@dataclass
class Payload:
    """One COPY's worth of encoded rows for a table, spooled."""

    format: str  # "text", "csv" or "binary"
    file: IO[bytes]
    rows: int = 0
    size: int = 0
    starts: list[int] = field(default_factory=list)  # the payload row each segment starts at
    segments: list[Segment] = field(default_factory=list)

    def append(
        self, write: Callable[[IO[bytes]], object], rows: int, origin: Origin | str = "", piece_index: int = 0,
        window_row: int = 0,
    ) -> None:
        """Let ``write`` add ``rows`` encoded rows; the size is read off the file, as Arrow's writers do not report it.

        ``origin``, ``piece_index`` and ``window_row`` say where the first of them came from.
        """
        before = self.file.tell()
        write(self.file)
        self.size += self.file.tell() - before
        if rows:
            self.starts.append(self.rows)
            self.segments.append(Segment(origin, piece_index, window_row))
        self.rows += rows

    def row_at_line(self, line: int) -> int:
        """The row (from 0) at the line COPY names: in CSV a value may hold a line break, which COPY counts.

        Text COPY escapes line breaks and binary COPY counts rows, so there the row is the line less one; a CSV
        payload is read again up to that line (on the error path only, and the spool is complete by then).
        """
        if self.format != "csv":
            return line - 1
        self.file.seek(0)
        reader = csv.reader(raw.decode("utf-8", "replace") for raw in self.file)
        for k, _ in enumerate(reader):
            if reader.line_num >= line:
                return k
        return line - 1

    def row(self, k: int) -> Segment | None:
        """Where the payload's row ``k`` (from 0) came from."""
        if not 0 <= k < self.rows or not self.segments:
            return None
        i = bisect_right(self.starts, k) - 1
        seg = self.segments[i]
        offset = k - self.starts[i]
        return Segment(seg.origin, seg.piece_index + offset, seg.window_row + offset)

    def chunks(self, size: int = 1024 * 1024) -> Iterator[bytes]:
        """The COPY data; a binary payload's trailer is sent after it, so the spool stays appendable."""
        self.file.seek(0)
        while True:
            piece = self.file.read(size)
            if not piece:
                break
            yield piece
        if self.format == "binary":
            yield BINARY_TRAILER

    def close(self) -> None:
        self.file.close()


@dataclass
class TablePayloads:
    table: Hypertable
    parts: dict[str, Payload] = field(default_factory=dict)
    # One binary payload holding every row in the table's chunk order (tidemark.load.sorted_spool).
    sorted: bool = False

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts.values())

    def spool(self, fmt: str) -> Payload:
        if fmt not in self.parts:
            payload = Payload(fmt, tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="w+b"))
            if fmt == "binary":
                payload.file.write(BINARY_HEADER)
                payload.size = len(BINARY_HEADER)
            self.parts[fmt] = payload
        return self.parts[fmt]

    def close(self) -> None:
        for p in self.parts.values():
            p.close()
