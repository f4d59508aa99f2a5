"""Python callables that YAML datasets in the DAG tests point at (``kind: python``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

UTC = timezone.utc
EPOCH = datetime(2024, 5, 1, tzinfo=UTC)
TIP = EPOCH + timedelta(days=2)


def minutes(start: datetime, end: datetime) -> Iterator[datetime]:
    t = start
    while t < end:
        yield t
        t += timedelta(minutes=1)


def meter_rows(t: datetime) -> dict[str, Any]:
    k = int((t - EPOCH) / timedelta(minutes=1))
    return {"t": t, "meter": f"m{k % 3}", "kwh": None if k % 97 == 0 else round(k * 0.25, 2), "tags": [f"k{k % 5}"]}


def meter_readings(start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    """A table-level source: one reading a minute over [EPOCH, TIP), nothing elsewhere."""
    return (meter_rows(t) for t in minutes(max(start, EPOCH), min(end, TIP)))


def meters(start: datetime, end: datetime) -> dict[str, Any]:
    """A dataset-level source: one call per window feeds both tables (rows as dicts, and Arrow)."""
    times = [t for t in minutes(max(start, EPOCH), min(end, TIP))]
    readings = (meter_rows(t) for t in times)
    hourly = [t for t in times if t.minute == 0]
    summary = pa.table({"t": pa.array(hourly, pa.timestamp("us", "UTC")),
                        "readings": pa.array([60] * len(hourly), pa.int32())})
    return {"readings": readings, "hourly": summary}


def meters_count(start: datetime, end: datetime) -> dict[str, int]:
    times = [t for t in minutes(max(start, EPOCH), min(end, TIP))]
    return {"readings": len(times), "hourly": sum(1 for t in times if t.minute == 0)}


def meters_tip() -> datetime:
    return TIP
