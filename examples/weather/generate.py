"""Write the weather example's data: a week of readings, one Parquet file per day (deterministic).

    python examples/weather/generate.py [--days 7] [--stations 20]
"""

from __future__ import annotations

import argparse
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def day_table(day: datetime, stations: int) -> pa.Table:
    minutes = 24 * 60
    times, names, temps, humidity, wind = [], [], [], [], []
    for m in range(minutes):
        t = day + timedelta(minutes=m)
        daily = math.sin((m / minutes) * 2 * math.pi - math.pi / 2)
        for s in range(stations):
            times.append(t)
            names.append(f"station-{s:02d}")
            temps.append(round(5 + 8 * daily + s * 0.3 + ((m * 7 + s * 13) % 11) / 10, 1))
            humidity.append(None if (m + s) % 997 == 0 else 40 + (m + 3 * s) % 50)
            wind.append(None if (m * s) % 1013 == 0 else round(((m * 31 + s * 17) % 250) / 10, 1))
    return pa.table({
        "observed_at": pa.array(times, pa.timestamp("us", "UTC")),
        "station": names,
        "temperature_c": pa.array(temps, pa.float32()),
        "humidity_pct": pa.array(humidity, pa.int16()),
        "wind": pa.array(wind, pa.float64()),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--stations", type=int, default=20)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent / "data"
    rows = 0
    for d in range(args.days):
        day = START + timedelta(days=d)
        folder = root / day.strftime("%Y/%m/%d")
        folder.mkdir(parents=True, exist_ok=True)
        table = day_table(day, args.stations)
        pq.write_table(table, folder / "observations.parquet", row_group_size=20_000)
        rows += table.num_rows
    print(f"wrote {rows:,} rows in {args.days} daily files under {root}")


if __name__ == "__main__":
    main()
