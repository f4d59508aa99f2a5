"""Arrow columns written as ``COPY ... (FORMAT csv)``, for pieces binary COPY cannot take.

Arrow's CSV writer does the work, so no Python loop runs per value: an
unquoted empty field is NULL to COPY, an empty string is written quoted.
Numeric, json, and uuids or intervals given as strings come this way, and
PostgreSQL parses their text itself. Timestamps are rendered to text with
numpy first: Arrow's CSV writer formats them value by value and spent 85 %
of the demo's encoding time on them.
"""

from __future__ import annotations

from typing import IO, Any


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
