"""Python rows refused before COPY when a value is one the column cannot take.

Checked here, a bad value fails the batch before any transaction, naming the
row it came from (its place in the source, or its time) and the value, cut
short, never the whole row; the server would only name a COPY line, and would take
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
from tidemark.model.origin import Origin, shown

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


def check_columns(win: TableWindow, columns: Sequence[Sequence[Any]], origin: Origin | str) -> list[tuple[list[Any], bool]]:
    """A chunk given column by column, in the table's order, checked: each column's values and whether it holds NULLs."""
    times = columns[win.time_index]
    _check_time(win, times, origin)
    return [(values, _check_column(win, i, values, times, origin)) for i, values in enumerate(map(list, columns))]


def _check_time(win: TableWindow, values: Sequence[Any], origin: Origin | str) -> None:
    col = win.table.time_column
    try:
        if set(map(type, values)) != {datetime} or any(v.utcoffset() is None for v in dict.fromkeys(values)):
            raise TypeError
        lo, hi = min(values), max(values)
    except (TypeError, AttributeError):
        n = next(i for i, v in enumerate(values) if not (isinstance(v, datetime) and v.utcoffset() is not None))
        raise win.bad(f"{col} is not a timezone-aware datetime: {shown(values[n])}", origin, n) from None
    if lo < win.start or hi >= win.end:
        n = next(i for i, v in enumerate(values) if not win.start <= v < win.end)
        raise win.bad(f"{col}={values[n].isoformat()} is outside the batch window", origin, n)


def _check_column(
    win: TableWindow, i: int, values: list[Any], times: Sequence[Any], origin: Origin | str
) -> bool:
    """Refuse a value the column cannot take (type, NULL, time zone, array element); True if NULLs."""
    column, kind = win.columns[i], win.kinds[i]
    types = set(map(type, values))
    nulls = _NoneType in types
    if nulls:
        if not column.nullable:
            n = values.index(None)
            raise win.bad(f"has NULL in NOT NULL column {column.name!r}", origin, n, times[n])
        types.discard(_NoneType)
    allowed = frozenset({list, tuple}) if kind.array else ACCEPTS[kind.base]
    if not types <= allowed:
        n = next(k for k, v in enumerate(values) if v is not None and type(v) not in allowed)
        raise win.bad(f"column {column.name!r} ({kind.short}) got {type(values[n]).__name__} {shown(values[n])}",
                      origin, n, times[n])
    if kind.base == "timestamp with time zone" and not kind.array and i != win.time_index:
        naive = next((k for k, v in enumerate(values) if v is not None and v.utcoffset() is None), None)
        if naive is not None:
            raise win.bad(f"column {column.name!r} (timestamptz) got a naive datetime {shown(values[naive])}",
                          origin, naive, times[naive])
    if kind.base == "timestamp without time zone" and not kind.array:
        aware = next((k for k, v in enumerate(values) if v is not None and v.utcoffset() is not None), None)
        if aware is not None:
            raise win.bad(f"column {column.name!r} (timestamp without time zone) got a timezone-aware datetime "
                          f"{shown(values[aware])}; use timestamptz or drop the zone", origin, aware, times[aware])
    if kind.array:
        _check_array_elements(win, column, kind, values, times, origin)
    return nulls


def _check_array_elements(
    win: TableWindow, column: Column, kind: ColumnType, values: list[Any], times: Sequence[Any], origin: Origin | str
) -> None:
    allowed = ACCEPTS[kind.base]
    for n, v in enumerate(values):
        if v is None:
            continue
        for e in v:
            if e is not None and type(e) not in allowed:
                raise win.bad(f"column {column.name!r} ({kind.short}) has element {type(e).__name__} {shown(e)}",
                              origin, n, times[n])
