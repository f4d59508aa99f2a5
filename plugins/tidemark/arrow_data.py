"""Columnar data (pyarrow, Parquet, CSV files, pandas) on its way into COPY without a loop per value.

Each column is cast to the Arrow type that renders as its PostgreSQL type in
CSV (cast errors name the value), the window and NOT NULL are checked with
compute kernels, and Arrow's CSV writer produces the payload for
``COPY ... (FORMAT csv)``: an unquoted empty field is NULL, an empty string
is written quoted. pyarrow is imported only when such data appears, so a
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
    import pyarrow.csv as csv

    csv.write_csv(batch, sink, csv.WriteOptions(include_header=False))
