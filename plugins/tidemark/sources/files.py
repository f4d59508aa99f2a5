"""Rows from Parquet or CSV files, local or on object storage, listed by placeholder and glob.

``url`` is a local path or any URL Airflow's ``ObjectStoragePath`` / fsspec
understands (``file://``, ``s3://conn_id@bucket/...``, ``gs://...``). It may
contain ``*`` globs and placeholders:

* ``{start:FORMAT}`` - a strftime format (``{start:%Y/%m/%d}``): rendered for
  every partition the window touches, at the finest unit the format names
  (``%H`` hours, ``%d`` days, ``%m`` months, ``%Y`` years), so only the
  window's files are listed;
* ``{table}`` - the hypertable's name, so one source can feed several tables.

A local path (relative to the declaration's folder) or ``file://`` URL must
lie inside the declaration's folder or a ``TIDEMARK_FILES_ROOTS`` folder
(``tidemark.sources.file_roots``): checked when declared, and for every file
listed when read.

Rows are filtered on the time column: Parquet row groups whose statistics
lie outside the window are skipped unread; CSV is filtered batch by batch as
it streams. Timestamps without a zone (naive Parquet columns, CSV text
without an offset) are read as UTC; a row without a time is refused. CSV files
have a header row; ``delimiter`` and ``null`` (the text meaning NULL, default
empty) are optional.

Every piece carries an :class:`~tidemark.model.origin.Origin` telling where
each of its rows is, so a refused value is named by its file and place:
Parquet by row group and row within it; CSV by the file's own line, counting
the header. The CSV reader counts records (pyarrow's streaming reader gives
batches in order), not lines: a blank line or a line break inside a quoted
value would shift a line number computed from them. So the line is found
only when a row is refused, by reading the file again with Python's ``csv``
module up to that record, which counts physical lines as the file has them,
quoted line breaks and blank lines included; a successful read pays nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidemark.errors import BadRow, InvalidInput
from tidemark.model.origin import Origin, shown, shown_names
from tidemark.sources import access, file_roots, registry
from tidemark.sources.csv_lines import line_of_record, line_of_width
from tidemark.sources.file_rows import Locate, as_utc, in_row_group, kept_rows, scalar_at, utc_times

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
_BATCH_ROWS = 65_536
_CSV_BLOCK = 4 << 20  # bytes of CSV a batch is parsed from: fewer, larger pieces than pyarrow's 1 MiB, as fast as a scan


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
        self._written = url
        self._base_dir = base_dir
        local = file_roots.local_path(url)
        if local is not None:
            if not local.startswith("/"):
                if base_dir is None:
                    # Each worker would resolve it against its own working directory.
                    raise registry.KeyRefused("url", f"{url!r}: a relative path needs the declaration's folder "
                                              "(base_dir); give an absolute path, or base_dir")
                url = local = str(Path(base_dir) / local)
            file_roots.check(self._written, file_roots.static_folder(local), file_roots.allowed_folders(base_dir))
        self._local = local is not None
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
            fs, paths = self._listed(pattern)
            found.extend(paths)
        return fs, list(dict.fromkeys(found))

    def _listed(self, pattern: str, only_existing: bool = True) -> tuple[Any, list[str]]:
        """The files ``pattern`` names (sorted); local ones resolved, each inside the allowed folders or refused."""
        fs, path = access.filesystem(pattern)
        if any(c in path for c in "*?["):
            paths = sorted(fs.glob(path))
        else:
            paths = [path] if not only_existing or fs.exists(path) else []
        if self._local:
            folders = file_roots.allowed_folders(self._base_dir)
            paths = [file_roots.check(self._written, p, folders, what=f"file {p} (from {shown(self._written)})") for p in paths]
        return fs, paths

    # -- reading ----------------------------------------------------------

    def _tables(self, tables: Sequence[Hypertable]) -> Sequence[Hypertable]:
        if len(tables) > 1 and "{table}" not in self.url:
            raise InvalidInput(f"files url {self.url!r} feeds {len(tables)} tables: put {{table}} in it")
        return tables

    def read(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> Iterator[tuple[str, Any, Origin]]:
        for table in self._tables(tables):
            fs, files = self.files(table.name, start, end)
            for path in files:
                for batch, origin in self._batches(fs, path, table, start, end):
                    yield table.name, batch, origin

    def _batches(
        self, fs: Any, path: str, table: Hypertable, start: datetime, end: datetime, only_time: bool = False
    ) -> Iterator[tuple[Any, Origin]]:
        """The file's rows in the window, as Arrow batches with the time column in UTC, each with where its rows are."""
        import pyarrow.compute as pc

        if self.format == "parquet":
            batches = self._parquet_batches(fs, path, table, start, end, only_time)
        else:
            batches = self._csv_batches(fs, path, table, only_time)
        for batch, locate in batches:
            batch = utc_times(batch, table, path, locate)
            times = batch.column(batch.schema.get_field_index(table.time_column))
            mask = pc.and_(pc.greater_equal(times, scalar_at(start, times.type)), pc.less(times, scalar_at(end, times.type)))
            kept = pc.indices_nonzero(mask)
            if len(kept):
                rows, where = kept_rows(batch, kept, locate)
                yield rows, Origin(f"file {path}", where)

    def _columns(self, path: str, names: Sequence[str], table: Hypertable, only_time: bool) -> list[str]:
        if table.time_column not in names:
            raise InvalidInput(f"table {table.qualified}: file {path} has no time column {table.time_column!r} "
                               f"(its columns: {shown_names(names)})")
        extra = sorted(set(names) - set(table.column_names))
        if extra and table.name not in self._warned:
            self._warned.add(table.name)
            log.info("files source for %s: columns %s are not table columns; ignored", table.qualified,
                     shown_names(extra))
        if only_time:
            return [table.time_column]
        return [c for c in table.column_names if c in names]

    def _parquet_batches(
        self, fs: Any, path: str, table: Hypertable, start: datetime, end: datetime, only_time: bool
    ) -> Iterator[tuple[Any, Locate]]:
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
                    lo, hi = as_utc(stats.min), as_utc(stats.max)
                    if hi < start or lo >= end:
                        continue
                groups.append(g)
            for g in groups:  # one group at a time: a batch's rows are then rows of one group, numbered from its first
                offset = 0
                for batch in pf.iter_batches(batch_size=_BATCH_ROWS, row_groups=[g], columns=columns):
                    yield batch, in_row_group(g, offset)
                    offset += batch.num_rows

    def _csv_batches(self, fs: Any, path: str, table: Hypertable, only_time: bool) -> Iterator[tuple[Any, Locate]]:
        """The file's rows in order (pyarrow's streaming reader), only the columns wanted, every one as text.

        Everything is text, the time column too: PostgreSQL parses values, and text columns keep "007" as written.
        """
        import pyarrow as pa
        import pyarrow.csv as csv

        parse = csv.ParseOptions(delimiter=self.delimiter)
        as_text = {c: pa.string() for c in table.column_names}
        try:
            with fs.open(path, "rb", compression="infer") as handle:  # the header's names, from the first block
                names = csv.open_csv(handle, parse_options=parse, convert_options=csv.ConvertOptions(column_types=as_text))
                columns = self._columns(path, names.schema.names, table, only_time)
            convert = csv.ConvertOptions(column_types=as_text, include_columns=columns, null_values=[self.null],
                                         strings_can_be_null=True, quoted_strings_can_be_null=False)
            with fs.open(path, "rb", compression="infer") as handle:
                reader = csv.open_csv(handle, read_options=csv.ReadOptions(block_size=_CSV_BLOCK), parse_options=parse,
                                      convert_options=convert)
                first = 0
                for batch in reader:
                    yield batch, self._csv_lines(fs, path, first)
                    first += batch.num_rows
        except pa.ArrowInvalid as exc:  # pyarrow's message quotes the offending line whole: never passed on
            raise self._not_csv(fs, path, table, str(exc)) from None

    def _csv_lines(self, fs: Any, path: str, first: int) -> Locate:
        """Row ``n`` of a batch whose first row is the file's data record ``first`` -> its line in the file."""
        return lambda n: line_of_record(fs, path, self.delimiter, first + n)

    def _not_csv(self, fs: Any, path: str, table: Hypertable, message: str) -> BadRow:
        m = re.search(r"Expected (\d+) columns, got (\d+)", message)
        if m is None:
            why = "is not UTF-8 text" if "UTF8" in message or "UTF-8" in message else "cannot be read as CSV"
            return BadRow(f"table {table.qualified}: file {path} {why} (delimiter {self.delimiter!r})")
        line = line_of_width(fs, path, self.delimiter, int(m.group(1)))
        return BadRow(f"table {table.qualified}: file {path} {line}: has {m.group(2)} fields where the header has "
                      f"{m.group(1)} (delimiter {self.delimiter!r}; a value holding it must be quoted)")

    def check(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> None:
        """Before any write: the first file of each table's range has the time column and every table column.

        One header (CSV) or footer (Parquet) per table, so a file laid out wrong fails the plan once instead
        of every batch; a range without files is left to the batches (a day may simply have no data).
        """
        for table in self._tables(tables):
            fs, files = self.files(table.name, start, end)
            if not files:
                continue
            names = self._names(fs, files[0], table)
            self._columns(files[0], names, table, only_time=False)
            missing = [c for c in table.column_names if c not in names]
            if missing:
                raise InvalidInput(f"table {table.qualified}: file {files[0]} has no column {shown_names(missing)} "
                                   f"(its columns: {shown_names(names)}); fix the files or the table's columns")

    def _names(self, fs: Any, path: str, table: Hypertable) -> list[str]:
        """The column names a file declares (its CSV header or its Parquet schema), read without its rows."""
        import pyarrow as pa
        import pyarrow.csv as csv
        import pyarrow.parquet as pq

        try:
            with fs.open(path, "rb", **({} if self.format == "parquet" else {"compression": "infer"})) as handle:
                if self.format == "parquet":
                    return list(pq.ParquetFile(handle, pre_buffer=False).schema_arrow.names)
                as_text = {c: pa.string() for c in table.column_names}
                reader = csv.open_csv(handle, parse_options=csv.ParseOptions(delimiter=self.delimiter),
                                      convert_options=csv.ConvertOptions(column_types=as_text))
                return list(reader.schema.names)
        except pa.ArrowInvalid as exc:
            raise self._not_csv(fs, path, table, str(exc)) if self.format != "parquet" else InvalidInput(
                f"table {table.qualified}: file {path} cannot be read as Parquet") from None

    def expected_counts(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> dict[str, int] | None:
        if not self.count:
            return None
        out = {}
        for table in self._tables(tables):
            fs, files = self.files(table.name, start, end)
            out[table.name] = sum(
                sum(b.num_rows for b, _ in self._batches(fs, path, table, start, end, only_time=True)) for path in files
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
            fs, files = self._listed(pattern.replace("{table}", table.name), only_existing=False)
            if not files:
                continue
            far = datetime(9999, 1, 1, tzinfo=_UTC)
            latest = None
            for batch, _ in self._batches(fs, files[-1], table, datetime(1, 1, 2, tzinfo=_UTC), far, only_time=True):
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
