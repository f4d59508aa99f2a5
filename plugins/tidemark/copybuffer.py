"""Turning source rows into COPY text, checking each row on the way.

Rows are encoded before the batch's transaction opens, so the database (on
the embedded engine: the one shared session) is held only for the COPY
itself, and a bad row fails the batch before anything is written. A row
outside the batch window, with the wrong column count or a wrong type is
named in the error, never written to the wrong window.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from tidemark.datasets import COLUMN_TYPES, Hypertable
from tidemark.errors import TidemarkError


class BadRow(TidemarkError):
    """A source produced a row that does not fit the table or the batch window."""


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: object) -> str:
    return str(value).translate(_ESCAPES)


def _exact_types(type_name: str) -> frozenset[type]:
    """The concrete types a column accepts (exact-type lookups are the hot path's fast check)."""
    allowed = set(COLUMN_TYPES[type_name])
    if type_name == "numeric":
        allowed.add(Decimal)
    return frozenset(allowed)


def _field(table: Hypertable, n: int, row: tuple[object, ...], i: int, exact: frozenset[type], boolean: bool) -> str:
    """One value as COPY text (unescaped), checked against its column's type."""
    v = row[i]
    if type(v) in exact:
        return ("t" if v else "f") if boolean else str(v)
    col = table.columns[i]
    if v is None:
        if not col.nullable:
            raise BadRow(f"{table.name}: row {n} has NULL in NOT NULL column {col.name!r}: {row!r}")
        return "\\N"
    raise BadRow(f"{table.name}: row {n} column {col.name!r} ({col.type}) got {type(v).__name__} {v!r}: {row!r}")


def encode_rows(table: Hypertable, rows: Iterable[tuple[object, ...]], start: datetime, end: datetime) -> tuple[bytes, int]:
    """Return (COPY text payload, row count) for ``COPY table (columns) FROM STDIN``."""
    width = len(table.columns)
    ti = table.time_index
    exact = [_exact_types(c.type) for c in table.columns]
    booleans = [c.type == "boolean" for c in table.columns]
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
        fields = [last_time_text if i == ti else _field(table, n, row, i, exact[i], booleans[i]) for i in range(width)]
        line = "\t".join(fields)
        # Fast path: no field needed escaping if the line has exactly width-1 tabs and no
        # backslash or line break; otherwise escape field by field (rare, e.g. hostile text).
        if line.count("\t") != width - 1 or "\\" in line or "\n" in line or "\r" in line:
            line = "\t".join(
                f if i == ti or booleans[i] or row[i] is None else _text(row[i])
                for i, f in enumerate(fields)
            )
        append(line)
    if not lines:
        return b"", 0
    return ("\n".join(lines) + "\n").encode(), len(lines)
