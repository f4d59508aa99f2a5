"""Where a record of a CSV file is: the physical line it starts on, as the file has its lines.

pyarrow's streaming reader counts records, not lines: a blank line (which it
skips) or a line break inside a quoted value would shift a line number
computed from the records before. These functions read the file again with
Python's ``csv`` module (the same quoting rules: ``"`` quotes, doubled to
escape), which counts physical lines; they run only when a row is refused,
so a read that succeeds pays nothing for them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

__all__ = ["line_of_record", "line_of_width"]


def _records(fs: Any, path: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(the physical line it starts on, fields) of every record of a CSV file, blank lines skipped (as pyarrow does)."""
    with fs.open(path, "rb", compression="infer") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        last = 0
        try:
            for fields in reader:
                first, last = last + 1, reader.line_num
                if fields:
                    yield first, fields
        except csv.Error:  # a field beyond csv's size limit: the lines are not counted further
            return


def line_of_record(fs: Any, path: str, delimiter: str, record: int) -> str:
    """The line data record ``record`` (from 0, the header not counted) starts on, as a message names it."""
    for k, (line, _) in enumerate(_records(fs, path, delimiter)):
        if k == record + 1:
            return f"line {line}"
    return f"data row {record + 1}"


def line_of_width(fs: Any, path: str, delimiter: str, width: int) -> str:
    """The first line whose record has other than ``width`` fields, as a message names it."""
    for line, fields in _records(fs, path, delimiter):
        if len(fields) != width:
            return f"line {line}"
    return "a line"
