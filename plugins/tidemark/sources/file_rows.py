"""Arrow rows read from a file: their time column in UTC, the rows of a window, and where each row is.

Kept apart from ``files`` (which finds and opens files) because every reader (CSV, Parquet) needs the same
steps after reading, and each step must say where a refused row is without showing the row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from tidemark.errors import BadRow
from tidemark.load.arrow_data import first_refused
from tidemark.model.origin import shown

if TYPE_CHECKING:
    from tidemark.model.dataset import Hypertable

__all__ = ["Locate", "as_utc", "as_utc_times", "in_row_group", "kept_rows", "scalar_at", "utc_times"]

_UTC = timezone.utc

Locate = Callable[[int], str]  # a row's index in a batch read from a file -> its place there ("line 7002")


def as_utc(t: datetime) -> datetime:
    return t.replace(tzinfo=_UTC) if t.tzinfo is None else t


def scalar_at(t: datetime, ttype: Any) -> Any:
    import pyarrow as pa

    return pa.scalar(t.astimezone(_UTC), type=pa.timestamp("us", tz="UTC")).cast(ttype)


def utc_times(batch: Any, table: Hypertable, path: str, locate: Locate) -> Any:
    """The batch with its time column as UTC timestamps (text parsed, naive read as UTC); a row without one refused."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.time_column
    i = batch.schema.get_field_index(column)
    values = batch.column(i)
    target = pa.timestamp("us", tz="UTC")
    if values.type != target:
        try:
            values = as_utc_times(values)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            n, alone = first_refused(values, as_utc_times)
            why = "is not a time" if alone else "mixes times with and without a zone offset"
            raise BadRow(f"table {table.qualified}: file {path} {locate(n)}: {column} {shown(values[n].as_py())} "
                         f"{why}") from None
        batch = batch.set_column(i, pa.field(column, target), values)
    if values.null_count:
        n = pc.index(pc.is_null(values), True).as_py()
        raise BadRow(f"table {table.qualified}: file {path} {locate(n)}: has no {column} (every row needs its time)")
    return batch


def as_utc_times(values: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    target = pa.timestamp("us", tz="UTC")
    if pa.types.is_timestamp(values.type) and values.type.tz is None:
        return pc.assume_timezone(values.cast(pa.timestamp("us")), "UTC")
    try:
        return pc.cast(values, target)
    except pa.ArrowInvalid:
        return pc.assume_timezone(pc.cast(values, pa.timestamp("us")), "UTC")


def in_row_group(group: int, offset: int) -> Locate:
    return lambda n: f"row group {group}, row {offset + n}"


def kept_rows(batch: Any, kept: Any, locate: Locate) -> tuple[Any, Locate]:
    """The rows of ``batch`` at the indices ``kept``, and ``locate`` for them."""
    first, last = kept[0].as_py(), kept[-1].as_py()
    if last - first + 1 == len(kept):  # one run of rows (a time-ordered file): a slice, no copy, nothing to hold on to
        return batch.slice(first, len(kept)), lambda n: locate(first + n)
    return batch.take(kept), lambda n: locate(kept[n].as_py())
