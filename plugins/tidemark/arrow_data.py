"""Columnar data (pyarrow, Parquet, CSV files, pandas) on its way into COPY without a loop per value.

Each column is cast to the Arrow type that renders as its PostgreSQL type in
CSV (cast errors name the value), the window and NOT NULL are checked with
compute kernels, and Arrow's CSV writer produces the payload for
``COPY ... (FORMAT csv)``: an unquoted empty field is NULL, an empty string
is written quoted. Timestamps are rendered to text with numpy first: Arrow's
CSV writer formats them value by value and spent 85 % of the demo's encoding
time on them. pyarrow is imported only when such data appears, so a
deployment loading only SQL rows does not need it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tidemark.encoding import TableEncoder

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


def prepare(enc: TableEncoder, batch: Any, origin: str) -> Any | None:
    """The batch with the table's columns, cast and checked; None if a column needs the row path."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for column, kind in zip(enc.columns, enc.kinds):
        values = batch.column(batch.schema.get_field_index(column.name))
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        if values.null_count and not column.nullable:
            n = pc.index(pc.is_null(values), True).as_py()
            raise enc.bad(f"row {enc._row_number + n} has NULL in NOT NULL column {column.name!r}", origin)
        if kind.array or kind.base == "bytea":
            return None
        if kind.base.startswith("timestamp"):
            tz = "UTC" if kind.base == "timestamp with time zone" else None
            if not (pa.types.is_timestamp(values.type) or pa.types.is_string(values.type)
                    or pa.types.is_large_string(values.type)):
                raise enc.bad(f"column {column.name!r} ({kind.short}) holds Arrow {values.type}, not timestamps", origin)
            if pa.types.is_timestamp(values.type) and values.type.tz is not None and tz is None:
                raise enc.bad(f"column {column.name!r} (timestamp without time zone) holds timezone-aware "
                              f"timestamps ({values.type}); declare it timestamptz", origin)
            values = _cast(enc, values, pa.timestamp("us", tz=tz), column.name, kind.short, origin)
        elif kind.base in _TARGETS:
            values = _cast(enc, values, getattr(pa, _TARGETS[kind.base])(), column.name, kind.short, origin)
        elif kind.base in _TEXT_PARSED:
            t = values.type
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)
                    or (kind.base == "numeric" and (pa.types.is_decimal(t) or pa.types.is_integer(t)
                                                    or pa.types.is_floating(t)))):
                return None
        columns.append(values)
    prepared = pa.RecordBatch.from_arrays(columns, names=list(enc.names))
    _check_window(enc, prepared.column(enc.time_index), origin)
    return prepared


def _cast(enc: TableEncoder, values: Any, target: Any, name: str, short: str, origin: str) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.type == target:
        return values
    try:
        return pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise enc.bad(f"column {name!r} ({short}) cannot take a value: {exc}", origin) from None


def _check_window(enc: TableEncoder, times: Any, origin: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    bounds = pc.min_max(times)
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    if lo is None:
        return
    if lo < enc.start or hi >= enc.end:
        start = pa.scalar(enc.start, type=times.type)
        end = pa.scalar(enc.end, type=times.type)
        n = pc.index(pc.or_(pc.less(times, start), pc.greater_equal(times, end)), True).as_py()
        raise enc.bad(f"row {enc._row_number + n} has {enc.table.time_column}={times[n].as_py().isoformat()} "
                      "outside the batch window", origin)


def write_csv(batch: Any, sink: IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.csv as csv

    columns = [timestamp_text(c) if pa.types.is_timestamp(c.type) else c for c in batch.columns]
    csv.write_csv(pa.RecordBatch.from_arrays(columns, names=batch.schema.names), sink,
                  csv.WriteOptions(include_header=False))


_DAY_US = 86_400_000_000
_DIGITS = 48  # ord("0")


def timestamp_text(values: Any) -> Any:
    """Microsecond timestamps as ISO 8601 text PostgreSQL parses (``+00`` when zoned), nulls kept.

    Civil dates from day numbers with Howard Hinnant's ``civil_from_days``,
    all in int64 arrays, then digits written into one fixed-width byte buffer.
    Years outside 1..9999 are left to Arrow's own formatting.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(values)
    if n == 0:
        return values
    us = pc.fill_null(values.cast(pa.int64()), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    days = us // _DAY_US
    in_day = us - days * _DAY_US
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1_460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    if int(year.min()) < 1 or int(year.max()) > 9999:
        return values
    zoned = values.type.tz is not None
    width = 29 if zoned else 26  # YYYY-MM-DD HH:MM:SS.ffffff[+00]
    text = np.empty((n, width), dtype=np.uint8)
    text[:, [4, 7]] = ord("-")
    text[:, 10] = ord(" ")
    text[:, [13, 16]] = ord(":")
    text[:, 19] = ord(".")
    if zoned:
        text[:, 26:29] = np.frombuffer(b"+00", dtype=np.uint8)
    for field, at, digits in ((year, 0, 4), (month, 5, 2), (day, 8, 2), (in_day // 3_600_000_000, 11, 2),
                              (in_day // 60_000_000 % 60, 14, 2), (in_day // 1_000_000 % 60, 17, 2),
                              (in_day % 1_000_000, 20, 6)):
        for k in range(digits):
            text[:, at + digits - 1 - k] = _DIGITS + field // 10**k % 10
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    validity = values.buffers()[0] if values.null_count else None
    if validity is not None and values.offset:
        validity = pc.is_valid(values).buffers()[1]  # re-based to offset 0, like the text buffer
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text), validity)
