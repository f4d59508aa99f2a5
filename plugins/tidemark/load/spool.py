"""Encoded rows held per table and COPY format until the write, in memory up to a few MiB, then on disk.

A batch's memory does not grow with its size, and the source is read once
even when the write is retried: the retry sends the spool again.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from tidemark.load.copy_binary import BINARY_HEADER, BINARY_TRAILER
from tidemark.model.dataset import Hypertable

SPOOL_IN_MEMORY = 8 * 1024 * 1024


@dataclass
class Payload:
    """One COPY's worth of encoded rows for a table, spooled."""

    format: str  # "text", "csv" or "binary"
    file: IO[bytes]
    rows: int = 0
    size: int = 0

    def append(self, write: Callable[[IO[bytes]], object], rows: int) -> None:
        """Let ``write`` add ``rows`` encoded rows; the size is read off the file, as Arrow's writers do not report it."""
        before = self.file.tell()
        write(self.file)
        self.size += self.file.tell() - before
        self.rows += rows

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
