"""Rows from Parquet or CSV files, local or on object storage, listed by placeholder and glob.

``url`` is a local path or any URL Airflow's ``ObjectStoragePath`` / fsspec
understands (``file://``, ``s3://conn_id@bucket/...``, ``gs://...``). It may
contain ``*`` globs and placeholders:

* ``{start:FORMAT}`` - a strftime format (``{start:%Y/%m/%d}``): rendered for
  every partition the window touches, at the finest unit the format names
  (``%H`` hours, ``%d`` days, ``%m`` months, ``%Y`` years), so only the
  window's files are listed;
* ``{table}`` - the hypertable's name, so one source can feed several tables.

Rows are filtered on the time column: Parquet row groups whose statistics
lie outside the window are skipped unread; CSV is filtered batch by batch as
it streams. Timestamps without a zone (naive Parquet columns, CSV text
without an offset) are read as UTC. CSV files have a header row; ``delimiter``
and ``null`` (the text meaning NULL, default empty) are optional.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidemark.errors import InvalidInput
from tidemark.sources import access

if TYPE_CHECKING:
    from tidemark.model.dataset import Hypertable

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(start|table)(?::([^{}]*))?\}")
_UNITS = [  # finest first: (directives, step)
    ("SfLT", timedelta(seconds=1)),
    ("MR", timedelta(minutes=1)),
    ("HIpk", timedelta(hours=1)),
    ("daAjuwUWVxcGe", timedelta(days=1)),
    ("mbBh", None),  # months: walk by day, render, deduplicate
    ("Yy", None),
]
_MAX_PARTITIONS = 200_000
_UTC = timezone.utc


def _step(fmt: str) -> timedelta:
    directives = set(re.findall(r"%-?([A-Za-z])", fmt))
    for letters, step in _UNITS:
        if directives & set(letters):
            return step or timedelta(days=1)
    return timedelta(days=1)


def _floor(t: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=_UTC)
    return epoch + ((t - epoch) // step) * step


class FilesSource:
    def __init__(
        self,
        url: str,
        format: str = "parquet",  # noqa: A002 - the YAML key's name
        *,
        delimiter: str = ",",
        null: str = "",
        count: bool | None = None,
        base_dir: str | Path | None = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise InvalidInput("a files source needs url: a path or URL, with globs and {start:%Y/%m/%d} placeholders")
        for m in _PLACEHOLDER.finditer(url):
            if m.group(1) == "table" and m.group(2):
                raise InvalidInput(f"files url {url!r}: {{table}} takes no format")
            if m.group(1) == "start" and not m.group(2):
                raise InvalidInput(f"files url {url!r}: {{start}} needs a strftime format, e.g. {{start:%Y/%m/%d}}")
        leftover = _PLACEHOLDER.sub("", url)
        if "{" in leftover or "}" in leftover:
            raise InvalidInput(f"files url {url!r}: unknown placeholder; use {{start:FORMAT}} or {{table}}")
        if format not in ("parquet", "csv"):
            raise InvalidInput(f"files format must be parquet or csv, got {format!r}")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise InvalidInput(f"csv delimiter must be one character, got {delimiter!r}")
        if "://" not in url and not url.startswith("/") and base_dir is not None:
            url = str(Path(base_dir) / url)
        self.url = url
        self.format = format
        self.delimiter = delimiter
        self.null = null
        self.count = (format == "parquet") if count is None else bool(count)
        self._warned: set[str] = set()

    # -- listing ----------------------------------------------------------

    def patterns(self, table: str, start: datetime, end: datetime) -> list[str]:
        """The URL patterns of the window's partitions, in time order."""
        url = self.url.replace("{table}", table)
        formats = [m.group(2) for m in _PLACEHOLDER.finditer(url) if m.group(1) == "start"]
        if not formats:
            return [url]
        step = min(_step(f) for f in formats)
        out: list[str] = []
        t = _floor(start.astimezone(_UTC), step)
        for _ in range(_MAX_PARTITIONS):
            if t >= end:
                break
            rendered = _render(url, t)
            if not out or out[-1] != rendered:
                out.append(rendered)
            t += step
        else:
            raise InvalidInput(f"files url {self.url!r}: the window spans more than {_MAX_PARTITIONS} partitions")
        return list(dict.fromkeys(out))

    def files(self, table: str, start: datetime, end: datetime) -> tuple[Any, list[str]]:
        fs = None
        found: list[str] = []
        for pattern in self.patterns(table, start, end):
            fs, path = access.filesystem(pattern)
            if any(c in path for c in "*?["):
                found.extend(sorted(fs.glob(path)))
            elif fs.exists(path):
                found.append(path)
        return fs, list(dict.fromkeys(found))

    # -- reading ----------------------------------------------------------

    def _tables(self, tables: Sequence[Hypertable]) -> Sequence[Hypertable]:
        if len(tables) > 1 and "{table}" not in self.url:
            raise InvalidInput(f"files url {self.url!r} feeds {len(tables)} tables: put {{table}} in it")
        return tables

    def read(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> Iterator[tuple[str, Any, str]]:
        for table in self._tables(tables):
            fs, files = self.files(table.name, start, end)
            for path in files:
                for batch in self._batches(fs, path, table, start, end):
                    yield table.name, batch, f"file {path}"

    def _batches(
        self, fs: Any, path: str, table: Hypertable, start: datetime, end: datetime, only_time: bool = False
    ) -> Iterator[Any]:
        """The file's rows in the window, as Arrow batches with the time column in UTC."""
        import pyarrow.compute as pc

        if self.format == "parquet":
            batches = self._parquet_batches(fs, path, table, start, end, only_time)
        else:
            batches = self._csv_batches(fs, path, table, only_time)
        for batch in batches:
            batch = _utc_times(batch, table.time_column)
            times = batch.column(batch.schema.get_field_index(table.time_column))
            mask = pc.and_(pc.greater_equal(times, _scalar(start, times.type)), pc.less(times, _scalar(end, times.type)))
            kept = batch.filter(mask)
            if kept.num_rows:
                yield kept

    def _columns(self, path: str, names: Sequence[str], table: Hypertable, only_time: bool) -> list[str]:
        if table.time_column not in names:
            raise InvalidInput(f"file {path} has no time column {table.time_column!r} (columns {list(names)})")
        extra = sorted(set(names) - set(table.column_names))
        if extra and table.name not in self._warned:
            self._warned.add(table.name)
            log.info("files source for %s: columns %s are not table columns; ignored", table.qualified, extra)
        if only_time:
            return [table.time_column]
        return [c for c in table.column_names if c in names]

    def _parquet_batches(
        self, fs: Any, path: str, table: Hypertable, start: datetime, end: datetime, only_time: bool
    ) -> Iterator[Any]:
        """Row group by row group, skipping those whose statistics lie outside the window.

        ParquetFile rather than a pyarrow dataset scan: the scan's readahead
        and pre-buffering made a batch's memory grow with the file.
        """
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as handle:
            pf = pq.ParquetFile(handle, pre_buffer=False)
            md = pf.metadata
            columns = self._columns(path, pf.schema_arrow.names, table, only_time)
            position = {md.schema.column(i).path: i for i in range(md.num_columns)}
            t = position.get(table.time_column)
            groups = []
            for g in range(md.num_row_groups):
                stats = md.row_group(g).column(t).statistics if t is not None else None
                if stats is not None and stats.has_min_max and isinstance(stats.min, datetime):
                    lo, hi = _as_utc(stats.min), _as_utc(stats.max)
                    if hi < start or lo >= end:
                        continue
                groups.append(g)
            if groups:
                yield from pf.iter_batches(batch_size=65_536, row_groups=groups, columns=columns)

    def _csv_batches(self, fs: Any, path: str, table: Hypertable, only_time: bool) -> Iterator[Any]:
        import pyarrow.dataset as pads

        data = pads.dataset(path, filesystem=fs, format=self._format(table))
        columns = self._columns(path, data.schema.names, table, only_time)
        yield from data.to_batches(columns=columns, batch_size=65_536, batch_readahead=1, fragment_readahead=1)

    def _format(self, table: Hypertable) -> Any:
        import pyarrow as pa
        import pyarrow.csv as csv
        import pyarrow.dataset as pads

        # Everything as text but the time column: PostgreSQL parses values, and text columns keep "007" as written.
        types = {c.name: pa.string() for c in table.cols}
        return pads.CsvFileFormat(
            parse_options=csv.ParseOptions(delimiter=self.delimiter),
            convert_options=csv.ConvertOptions(column_types=types, null_values=[self.null],
                                               strings_can_be_null=True, quoted_strings_can_be_null=False),
        )

    def expected_counts(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> dict[str, int] | None:
        if not self.count:
            return None
        out = {}
        for table in self._tables(tables):
            fs, files = self.files(table.name, start, end)
            out[table.name] = sum(
                sum(b.num_rows for b in self._batches(fs, path, table, start, end, only_time=True)) for path in files
            )
        return out

    def tip(self, tables: Sequence[Hypertable]) -> datetime | None:
        """The newest file's latest time (files sorted by name: partition placeholders sort by time)."""
        import pyarrow.compute as pc

        tips = []
        for table in self._tables(tables):
            pattern = _PLACEHOLDER.sub(
                lambda m: re.sub(r"%-?[A-Za-z]", "*", m.group(2)) if m.group(1) == "start" else m.group(0), self.url
            )
            fs, path = access.filesystem(pattern.replace("{table}", table.name))
            files = sorted(fs.glob(path)) if any(c in path for c in "*?[") else [path]
            if not files:
                continue
            far = datetime(9999, 1, 1, tzinfo=_UTC)
            latest = None
            for batch in self._batches(fs, files[-1], table, datetime(1, 1, 2, tzinfo=_UTC), far, only_time=True):
                m = pc.max(batch.column(batch.schema.get_field_index(table.time_column))).as_py()
                latest = m if latest is None or (m is not None and m > latest) else latest
            if latest is not None:
                tips.append(latest)
        return min(tips) if tips else None

    def describe(self) -> str:
        return f"{self.format} files at {_without_credentials(self.url)}"


def _render(url: str, t: datetime) -> str:
    return _PLACEHOLDER.sub(lambda m: t.strftime(m.group(2)) if m.group(1) == "start" else m.group(0), url)


def _without_credentials(url: str) -> str:
    return re.sub(r"://[^/@]*@", "://***@", url)


def _as_utc(t: datetime) -> datetime:
    return t.replace(tzinfo=_UTC) if t.tzinfo is None else t


def _scalar(t: datetime, ttype: Any) -> Any:
    import pyarrow as pa

    return pa.scalar(t.astimezone(_UTC), type=pa.timestamp("us", tz="UTC")).cast(ttype)


def _utc_times(batch: Any, column: str) -> Any:
    """The batch with its time column as UTC timestamps (text parsed, naive read as UTC)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    i = batch.schema.get_field_index(column)
    values = batch.column(i)
    target = pa.timestamp("us", tz="UTC")
    if values.type == target:
        return batch
    if pa.types.is_timestamp(values.type) and values.type.tz is None:
        values = pc.assume_timezone(values.cast(pa.timestamp("us")), "UTC")
    else:
        try:
            values = pc.cast(values, target)
        except pa.ArrowInvalid:
            values = pc.assume_timezone(pc.cast(values, pa.timestamp("us")), "UTC")
    return batch.set_column(i, pa.field(column, target), values)
