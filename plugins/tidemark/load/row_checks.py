"""Python rows refused before COPY when a value is one the column cannot take.

Checked here, a bad value fails the batch before any transaction, naming the
row it came from; the server would only name a COPY line, and would take
some values silently (an int in a text column, a naive datetime in a
timestamptz one, shifted by the session's time zone). Each column is checked
with a ``set`` of its value types, one C-level pass per column rather than a
Python loop per value, and searched value by value only once it is known bad.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tidemark.load.table_window import TableWindow
from tidemark.model.column_types import ColumnType
from tidemark.model.dataset import Column

_NoneType = type(None)

# base type -> Python types a value of it may be; tidemark.load.copy_text renders each of them.
ACCEPTS: dict[str, frozenset[type]] = {
    "smallint": frozenset({int}),
    "integer": frozenset({int}),
    "bigint": frozenset({int}),
    "real": frozenset({float, int}),
    "double precision": frozenset({float, int}),
    "numeric": frozenset({int, float, Decimal}),
    "text": frozenset({str}),
    "character varying": frozenset({str}),
    "boolean": frozenset({bool}),
    "date": frozenset({date}),
    "timestamp without time zone": frozenset({datetime}),
    "timestamp with time zone": frozenset({datetime}),
    "interval": frozenset({timedelta}),
    "uuid": frozenset({uuid.UUID, str}),
    "json": frozenset({dict, list, str, int, float, bool}),
    "jsonb": frozenset({dict, list, str, int, float, bool}),
    "bytea": frozenset({bytes, bytearray, memoryview}),
}


def check_columns(
    win: TableWindow, columns: Sequence[Sequence[Any]], originals: Sequence[Any], origin: str
) -> list[tuple[list[Any], bool]]:
    """A chunk given column by column, in the table's order, checked: each column's values and whether it holds NULLs."""
    _check_time(win, columns[win.time_index], originals, origin)
    return [(values, _check_column(win, i, values, originals, origin)) for i, values in enumerate(map(list, columns))]


def _check_time(win: TableWindow, values: Sequence[Any], originals: Sequence[Any], origin: str) -> None:
    col = win.table.time_column
    try:
        if set(map(type, values)) != {datetime} or any(v.utcoffset() is None for v in dict.fromkeys(values)):
            raise TypeError
        lo, hi = min(values), max(values)
    except (TypeError, AttributeError):
        n = next(i for i, v in enumerate(values) if not (isinstance(v, datetime) and v.utcoffset() is not None))
        raise win.bad(f"row {win.row + n} has a {col} that is not a timezone-aware datetime: "
                      f"{originals[n]!r}", origin) from None
    if lo < win.start or hi >= win.end:
        n = next(i for i, v in enumerate(values) if not win.start <= v < win.end)
        raise win.bad(f"row {win.row + n} has {col}={values[n].isoformat()} outside the batch window: "
                      f"{originals[n]!r}", origin)


def _check_column(win: TableWindow, i: int, values: list[Any], originals: Sequence[Any], origin: str) -> bool:
    """Refuse a value the column cannot take (type, NULL, time zone, array element); True if NULLs."""
    column, kind = win.columns[i], win.kinds[i]
    types = set(map(type, values))
    nulls = _NoneType in types
    if nulls:
        if not column.nullable:
            n = values.index(None)
            raise win.bad(f"row {win.row + n} has NULL in NOT NULL column {column.name!r}: "
                          f"{originals[n]!r}", origin)
        types.discard(_NoneType)
    allowed = frozenset({list, tuple}) if kind.array else ACCEPTS[kind.base]
    if not types <= allowed:
        n = next(k for k, v in enumerate(values) if v is not None and type(v) not in allowed)
        raise win.bad(f"row {win.row + n} column {column.name!r} ({kind.short}) got "
                      f"{type(values[n]).__name__} {values[n]!r}: {originals[n]!r}", origin)
    if kind.base == "timestamp with time zone" and not kind.array and i != win.time_index:
        naive = next((k for k, v in enumerate(values) if v is not None and v.utcoffset() is None), None)
        if naive is not None:
            raise win.bad(f"row {win.row + naive} column {column.name!r} (timestamptz) got a naive "
                          f"datetime {values[naive]!r}: {originals[naive]!r}", origin)
    if kind.base == "timestamp without time zone" and not kind.array:
        aware = next((k for k, v in enumerate(values) if v is not None and v.utcoffset() is not None), None)
        if aware is not None:
            raise win.bad(f"row {win.row + aware} column {column.name!r} (timestamp without time zone) "
                          f"got a timezone-aware datetime {values[aware]!r}; use timestamptz or drop the zone",
                          origin)
    if kind.array:
        _check_array_elements(win, column, kind, values, originals, origin)
    return nulls


def _check_array_elements(
    win: TableWindow, column: Column, kind: ColumnType, values: list[Any], originals: Sequence[Any], origin: str
) -> None:
    allowed = ACCEPTS[kind.base]
    for n, v in enumerate(values):
        if v is None:
            continue
        for e in v:
            if e is not None and type(e) not in allowed:
                raise win.bad(f"row {win.row + n} column {column.name!r} ({kind.short}) has element "
                              f"{type(e).__name__} {e!r}: {originals[n]!r}", origin)
