"""Columnar data (pyarrow, Parquet, CSV files, pandas) taken in without a loop per value.

Each column is cast to the Arrow type that renders as its PostgreSQL type
(a cast error names the row and the value, cut short: the value is found by
halving the column, on the error path only), and the window and NOT NULL are checked with
compute kernels, so a bad value fails the batch before any transaction just
as on the row path. The prepared piece then goes to ``tidemark.load.copy_binary``
or ``tidemark.load.copy_csv``. pyarrow is imported only when such data
appears, so a deployment loading only SQL rows does not need it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tidemark.load.copy_binary import uuid_bytes
from tidemark.load.table_window import TableWindow
from tidemark.model.origin import Origin, shown

MAX_ROWS_PER_BATCH = 65_536

# PostgreSQL base type -> Arrow type name to cast to (None: keep strings/decimals as they are).
_TARGETS = {
    "smallint": "int16",
    "integer": "int32",
    "bigint": "int64",
    "real": "float32",
    "double precision": "float64",
    "boolean": "bool_",
    "date": "date32",
    "text": "string",
    "character varying": "string",
}
# Types PostgreSQL parses from their text in CSV, when the data holds them as strings (or decimals).
_TEXT_PARSED = {"numeric", "uuid", "json", "jsonb", "interval"}


def available() -> bool:
    """Whether pyarrow and numpy are installed (``tidemark[parquet]``): the binary COPY path needs both."""
    try:
        import numpy  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


# PostgreSQL base type -> Arrow type a checked Python value of it converts to without loss.
_FROM_ROWS = {
    "smallint": "int16",
    "integer": "int32",
    "bigint": "int64",
    "double precision": "float64",
    "boolean": "bool_",
    "date": "date32",
    "text": "string",
    "character varying": "string",
}
# Rows of a table whose every column is one of these go as binary COPY too (the server then parses
# nothing: a third less COPY time); from_rows takes timestamps as they are, zoned or not.
ROWS_AS_BINARY = frozenset(_FROM_ROWS) | {"timestamp with time zone", "timestamp without time zone"}


def from_rows(columns: Any, kinds: Any, names: Any) -> Any | None:
    """Checked row values (one list per column) as a record batch; None if one is beyond its Arrow type."""
    import pyarrow as pa

    arrays = []
    for values, kind in zip(columns, kinds):
        if kind.base.startswith("timestamp"):
            target = pa.timestamp("us", tz="UTC" if kind.base == "timestamp with time zone" else None)
        else:
            target = getattr(pa, _FROM_ROWS[kind.base])()
        try:
            arrays.append(pa.array(values, type=target))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return None
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


def is_columnar(data: Any) -> bool:
    module = type(data).__module__
    if module.startswith("pyarrow"):
        return hasattr(data, "schema") and hasattr(data, "num_rows")
    return module.startswith("pandas") and type(data).__name__ == "DataFrame"


def record_batches(data: Any) -> Iterator[Any]:
    import pyarrow as pa

    if type(data).__module__.startswith("pandas"):
        data = pa.Table.from_pandas(data, preserve_index=False)  # NaN in float columns -> null
    if isinstance(data, pa.RecordBatch):
        yield data
    elif isinstance(data, pa.Table):
        yield from data.to_batches(max_chunksize=MAX_ROWS_PER_BATCH)
    else:
        raise TypeError(f"unsupported columnar data {type(data).__name__}")


def prepare(win: TableWindow, batch: Any, origin: Origin | str) -> Any | None:
    """The batch with the table's columns, cast and checked; None if a column needs the row path."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for column, kind in zip(win.columns, win.kinds):
        values = batch.column(batch.schema.get_field_index(column.name))
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        if values.null_count and not column.nullable:
            n = pc.index(pc.is_null(values), True).as_py()
            raise win.bad(f"has NULL in NOT NULL column {column.name!r}", origin, n, _time_at(win, batch, n))
        if kind.array or kind.base == "bytea":
            return None
        if kind.base.startswith("timestamp"):
            tz = "UTC" if kind.base == "timestamp with time zone" else None
            if not (pa.types.is_timestamp(values.type) or pa.types.is_string(values.type)
                    or pa.types.is_large_string(values.type)):
                raise win.bad(f"column {column.name!r} ({kind.short}) holds Arrow {values.type}, not timestamps", origin)
            if pa.types.is_timestamp(values.type) and values.type.tz is not None and tz is None:
                raise win.bad(f"column {column.name!r} (timestamp without time zone) holds timezone-aware "
                              f"timestamps ({values.type}); declare it timestamptz", origin)
            values = _cast(win, batch, values, pa.timestamp("us", tz=tz), column.name, kind.short, origin)
        elif kind.base in _TARGETS:
            values = _cast(win, batch, values, getattr(pa, _TARGETS[kind.base])(), column.name, kind.short, origin)
        elif kind.base == "uuid" and uuid_bytes(values.type):  # binary COPY only (see copy_binary.copy_format)
            values = values.storage if isinstance(values.type, pa.BaseExtensionType) else values
        elif kind.base == "interval" and pa.types.is_duration(values.type):  # binary COPY only
            values = _cast(win, batch, values, pa.duration("us"), column.name, kind.short, origin)
        elif kind.base in _TEXT_PARSED:
            t = values.type
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)
                    or (kind.base == "numeric" and (pa.types.is_decimal(t) or pa.types.is_integer(t)
                                                    or pa.types.is_floating(t)))):
                return None
        columns.append(values)
    prepared = pa.RecordBatch.from_arrays(columns, names=list(win.names))
    _check_window(win, prepared.column(win.time_index), origin)
    return prepared


def _cast(win: TableWindow, batch: Any, values: Any, target: Any, name: str, short: str, origin: Origin | str) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.type == target:
        return values
    try:
        return pc.cast(values, target)
    except pa.ArrowNotImplementedError:
        raise win.bad(f"column {name!r} ({short}) holds Arrow {values.type}, which cannot be cast to it", origin) from None
    except pa.ArrowInvalid:
        n, why = first_refused(values, lambda part: pc.cast(part, target))
        reason = "out of range" if why and ("not in range" in why or "overflow" in why.lower()) else f"not a valid {short}"
        if pa.types.is_integer(target) and pa.types.is_string(values.type) and _is_int64(values.slice(n, 1)):
            reason = "out of range"
        raise win.bad(f"column {name!r} ({short}) cannot take {shown(values[n].as_py())} ({reason})", origin, n,
                      _time_at(win, batch, n)) from None


def first_refused(values: Any, convert: Callable[[Any], object]) -> tuple[int, str | None]:
    """The index of the first value ``convert`` refuses (pyarrow.ArrowInvalid), found by halving: about two
    conversions' work, on the error path only. With pyarrow's message for that value alone (it quotes the value
    whole: for telling the kind of refusal, not for a message), or None if alone it is accepted.
    """
    import pyarrow as pa

    lo, hi = 0, len(values)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(values.slice(lo, mid - lo))
        except pa.ArrowInvalid:
            hi = mid
        else:
            lo = mid
    try:
        convert(values.slice(lo, 1))
    except pa.ArrowInvalid as exc:
        return lo, str(exc)
    return lo, None


def _is_int64(value: Any) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.cast(value, pa.int64())
    except pa.ArrowInvalid:
        return False
    return True


def _time_at(win: TableWindow, batch: Any, n: int) -> Any:
    """Row ``n``'s time as the data holds it (a message adds it when it is a valid time), or None."""
    i = batch.schema.get_field_index(win.table.time_column)
    if i < 0:
        return None
    try:
        return batch.column(i)[n].as_py()
    except (ValueError, OverflowError, TypeError):
        return None


def _check_window(win: TableWindow, times: Any, origin: Origin | str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    bounds = pc.min_max(times)
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    if lo is None:
        return
    if lo < win.start or hi >= win.end:
        start = pa.scalar(win.start, type=times.type)
        end = pa.scalar(win.end, type=times.type)
        n = pc.index(pc.or_(pc.less(times, start), pc.greater_equal(times, end)), True).as_py()
        raise win.bad(f"{win.table.time_column}={times[n].as_py().isoformat()} is outside the batch window", origin, n)
