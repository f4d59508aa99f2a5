"""Turning source rows into COPY text, checking each row on the way.

Rows are encoded before the batch's transaction opens, so the database (on
the embedded engine: the one shared session) is held only for the COPY
itself, and a bad row fails the batch before anything is written. A row
outside the batch window, with the wrong column count or a wrong type is
named in the error, never written to the wrong window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal

from tidemark.datasets import COLUMN_TYPES, Hypertable
from tidemark.errors import TidemarkError


class BadRow(TidemarkError):
    """A source produced a row that does not fit the table or the batch window."""


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: object) -> str:
    return str(value).translate(_ESCAPES)


def _boolean(value: object) -> str:
    return "t" if value else "f"


def _number(value: object) -> str:
    return str(value)


def _encoder(type_name: str) -> Callable[[object], str]:
    if type_name == "text":
        return _text
    if type_name == "boolean":
        return _boolean
    return _number


def encode_rows(table: Hypertable, rows: Iterable[tuple[object, ...]], start: datetime, end: datetime) -> tuple[bytes, int]:
    """Return (COPY text payload, row count) for ``COPY table (columns) FROM STDIN``."""
    width = len(table.columns)
    ti = table.time_index
    checks = []
    for i, col in enumerate(table.columns):
        allowed = COLUMN_TYPES[col.type]
        if col.type in ("numeric",):
            allowed = (*allowed, Decimal)
        checks.append((i, col, allowed, _encoder(col.type)))
    lines: list[str] = []
    append = lines.append
    last_time: object = None
    last_time_text = ""
    for n, row in enumerate(rows):
        if len(row) != width:
            raise BadRow(
                f"{table.name}: row {n} has {len(row)} values, expected {width} {table.column_names}: {row!r}"
            )
        t = row[ti]
        if t is not last_time:
            if not isinstance(t, datetime) or t.tzinfo is None:
                raise BadRow(f"{table.name}: row {n} has a {table.time_column} that is not a timezone-aware datetime: {row!r}")
            if not (start <= t < end):
                raise BadRow(
                    f"{table.name}: row {n} has {table.time_column}={t.isoformat()} outside the batch window "
                    f"[{start.isoformat()}, {end.isoformat()}): {row!r}"
                )
            last_time = t
            last_time_text = t.isoformat()
        fields = []
        for i, col, allowed, enc in checks:
            v = row[i]
            if i == ti:
                fields.append(last_time_text)
            elif v is None:
                if not col.nullable:
                    raise BadRow(f"{table.name}: row {n} has NULL in NOT NULL column {col.name!r}: {row!r}")
                fields.append("\\N")
            elif not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
                raise BadRow(
                    f"{table.name}: row {n} column {col.name!r} ({col.type}) got {type(v).__name__} {v!r}: {row!r}"
                )
            else:
                fields.append(enc(v))
        append("\t".join(fields))
    if not lines:
        return b"", 0
    return ("\n".join(lines) + "\n").encode(), len(lines)
