"""Columnar data (pyarrow, Parquet, CSV files, pandas) on its way into COPY without a loop per value.

Each column is cast to the Arrow type that renders as its PostgreSQL type in
CSV (cast errors name the value), the window and NOT NULL are checked with
compute kernels, and Arrow's CSV writer produces the payload for
``COPY ... (FORMAT csv)``: an unquoted empty field is NULL, an empty string
is written quoted. Timestamps are rendered to text with numpy first: Arrow's
CSV writer formats them value by value and spent 85 % of the demo's encoding
time on them.

Where every column of a piece is a number, boolean, date, timestamp, text,
a raw uuid or a duration (interval), the piece goes as ``COPY ... (FORMAT binary)`` instead: built with Arrow's
element-wise binary join, it costs the client what CSV does and saves the
server parsing (the embedded engine copies the demo's rows about a third
faster). Numeric, json, and uuids or intervals given as strings keep CSV,
where PostgreSQL parses the text itself. pyarrow is imported only when such data appears, so a
deployment loading only SQL rows does not need it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tidemark.load.encoding import TableEncoder

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
        elif kind.base == "uuid" and _uuid_bytes(values.type):  # binary COPY only (see copy_format)
            values = values.storage if isinstance(values.type, pa.BaseExtensionType) else values
        elif kind.base == "interval" and pa.types.is_duration(values.type):  # binary COPY only
            values = _cast(enc, values, pa.duration("us"), column.name, kind.short, origin)
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


# PostgreSQL base type -> how its binary COPY field is built from the prepared Arrow column.
_BINARY = {
    "smallint": ">i2",
    "integer": ">i4",
    "bigint": ">i8",
    "real": ">f4",
    "double precision": ">f8",
    "boolean": "bool",
    "date": "date",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamp",
    "text": "text",
    "character varying": "text",
}
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
BINARY_TRAILER = b"\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01, where PostgreSQL's binary dates and timestamps count from
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400_000_000
_NULL_FIELD = b"\xff\xff\xff\xff"  # length -1


def _joined(*parts: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary()))


def _uuid_bytes(t: Any) -> bool:
    """Arrow's uuid extension type, or plain 16-byte values."""
    import pyarrow as pa

    storage = t.storage_type if isinstance(t, pa.BaseExtensionType) else t
    return bool(pa.types.is_fixed_size_binary(storage) and storage.byte_width == 16)


def _binary_how(values: Any, kind: Any) -> str | None:
    import pyarrow as pa

    if kind.array:
        return None
    if kind.base == "uuid":
        return "uuid" if _uuid_bytes(values.type) else None
    if kind.base == "interval":
        return "interval" if pa.types.is_duration(values.type) else None
    return _BINARY.get(kind.base)


def copy_format(batch: Any, kinds: Any, *, binary: bool = True) -> str | None:
    """``binary`` or ``csv`` for a prepared piece; None when it holds values only binary COPY or rows carry.

    Raw uuids and durations have no CSV rendering here; with a numeric or a
    JSON string beside them (not binary-copyable), the piece takes the row path.
    """
    import pyarrow as pa

    hows = [_binary_how(v, k) for v, k in zip(batch.columns, kinds)]
    if binary and all(hows):
        return "binary"
    if any(_uuid_bytes(v.type) or pa.types.is_duration(v.type) for v in batch.columns):
        return None
    return "csv"


BINARY_SLICE_ROWS = 16_384  # framed a slice at a time: the per-column temporaries stay a few MiB


def write_binary(batch: Any, kinds: Any, sink: IO[bytes]) -> None:
    """The piece's tuples in COPY's binary format (no header or trailer: the payload adds them once)."""
    for start in range(0, batch.num_rows, BINARY_SLICE_ROWS):
        _write_binary_slice(batch.slice(start, BINARY_SLICE_ROWS), kinds, sink)


def _write_binary_slice(batch: Any, kinds: Any, sink: IO[bytes]) -> None:
    import numpy as np

    n = batch.num_rows
    field_count = np.full(n, batch.num_columns, dtype=">i2")
    parts = [_fixed_size(field_count.view(np.uint8), 2, n)]
    for values, kind in zip(batch.columns, kinds):
        how = _binary_how(values, kind)
        assert how is not None, "write_binary on a piece copy_format did not pass as binary"
        parts.append(_binary_field(values, how, n))
    rows = _joined(*parts)
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64, count=n + 1, offset=rows.offset * 8)
    sink.write(memoryview(rows.buffers()[2])[offsets[0]:offsets[-1]])


def _fixed_size(data: Any, width: int, n: int) -> Any:
    import pyarrow as pa

    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(data)]).cast(pa.large_binary())


def _binary_field(values: Any, how: str, n: int) -> Any:
    """Each value as a binary COPY field: its 4-byte length, then its bytes; NULL as length -1."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if how == "text":
        text = values.cast(pa.large_binary())
        lengths = pc.binary_length(text).fill_null(0).to_numpy(zero_copy_only=False).astype(">i4")
        field = _joined(_fixed_size(lengths.view(np.uint8), 4, n), text)
    else:
        if how == "bool":
            raw = values.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
        elif how == "date":
            raw = (values.cast(pa.int32()).fill_null(0).to_numpy(zero_copy_only=False) - _PG_EPOCH_DAYS).astype(">i4")
        elif how == "timestamp":
            raw = (values.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False) - _PG_EPOCH_US).astype(">i8")
        elif how == "uuid":  # 16 bytes as they are; a null slot's bytes are replaced below
            raw = np.frombuffer(values.buffers()[1], dtype=np.uint8, count=16 * n, offset=16 * values.offset)
            raw = raw.reshape(n, 16).copy().view("V16").reshape(n)
        elif how == "interval":  # microseconds, days, months: split into days like a timedelta
            us = values.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            days = us // 86_400_000_000
            raw = np.empty(n, dtype=[("time", ">i8"), ("day", ">i4"), ("month", ">i4")])
            raw["time"], raw["day"], raw["month"] = us - days * 86_400_000_000, days, 0
        else:
            raw = values.fill_null(0).to_numpy(zero_copy_only=False).astype(how)
        width = raw.dtype.itemsize
        framed = np.empty((n, 4 + width), dtype=np.uint8)
        framed[:, :4] = np.frombuffer(width.to_bytes(4, "big"), dtype=np.uint8)
        framed[:, 4:] = raw.view(np.uint8).reshape(n, width)
        field = _fixed_size(framed, 4 + width, n)
    if values.null_count:
        field = pc.if_else(pc.is_valid(values), field, pa.scalar(_NULL_FIELD, pa.large_binary()))
    return field


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
