"""Turning a source's pieces into COPY payloads, checking every row on the way.

Pieces are encoded as they arrive into a spool per table (memory up to a
few MiB, then a temporary file), so a batch's memory does not grow with its
size, the source is read once even when the write is retried, and the
database (on the embedded engine: the one shared session) is held only for
the COPY itself. A bad row fails the batch here, before any transaction.

Two encodings, one per kind of data:

* rows (tuples, dicts, cursor rows) are transposed into columns and each
  column is checked and rendered with one C-level pass per column
  (``map``/``set``/``join``), into COPY's text format;
* Arrow data (Parquet, CSV files, pandas, pyarrow) is cast with Arrow's
  kernels and written by Arrow into ``COPY ... (FORMAT binary)`` where every
  column allows it, else by Arrow's CSV writer into ``COPY ... (FORMAT csv)``:
  no Python loop per value. Columns CSV cannot carry faithfully (bytea,
  intervals, arrays) send that piece down the row path instead.

PostgreSQL stays the judge of values it parses (a varchar too long, a
numeric out of range, malformed JSON): the loader names the dataset, table,
window and COPY line when the server refuses one.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import IO, Any

from tidemark.model.column_types import ColumnType
from tidemark.model.dataset import Column, Hypertable
from tidemark.errors import BadRow
from tidemark.model.dataset import RowBatch

log = logging.getLogger(__name__)

ROWS_PER_CHUNK = 20_000
SPOOL_IN_MEMORY = 8 * 1024 * 1024
_warned_extra: set[tuple[str, str, tuple[str, ...]]] = set()


@dataclass
class Payload:
    """One COPY's worth of encoded rows for a table, spooled."""

    format: str  # "text", "csv" or "binary"
    file: IO[bytes]
    rows: int = 0
    size: int = 0

    def chunks(self, size: int = 1024 * 1024) -> Iterator[bytes]:
        """The COPY data; a binary payload's trailer is sent after it, so the spool stays appendable."""
        self.file.seek(0)
        while True:
            piece = self.file.read(size)
            if not piece:
                break
            yield piece
        if self.format == "binary":
            from tidemark.load.arrow_data import BINARY_TRAILER

            yield BINARY_TRAILER

    def close(self) -> None:
        self.file.close()


@dataclass
class TablePayloads:
    table: Hypertable
    parts: dict[str, Payload] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts.values())

    def spool(self, fmt: str) -> Payload:
        if fmt not in self.parts:
            payload = Payload(fmt, tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="w+b"))
            if fmt == "binary":
                from tidemark.load.arrow_data import BINARY_HEADER

                payload.file.write(BINARY_HEADER)
                payload.size = len(BINARY_HEADER)
            self.parts[fmt] = payload
        return self.parts[fmt]

    def close(self) -> None:
        for p in self.parts.values():
            p.close()


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"
_NoneType = type(None)


def _escape_all(values: list[str]) -> list[str]:
    joined = "".join(values)
    if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
        return [v.translate(_ESCAPES) for v in values]
    return values


def _interval_text(td: timedelta) -> str:
    return f"{td.days} days {td.seconds}.{td.microseconds:06d} seconds"


def _json_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)


def _bytea_text(v: Any) -> str:
    return "\\x" + bytes(v).hex()


def _array_element(kind: ColumnType, v: Any) -> str:
    if v is None:
        return "NULL"
    text = _SCALAR[kind.base][1](v)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# base type -> (Python types accepted, value -> text before COPY escaping)
_SCALAR: dict[str, tuple[frozenset[type], Callable[[Any], str]]] = {
    "smallint": (frozenset({int}), str),
    "integer": (frozenset({int}), str),
    "bigint": (frozenset({int}), str),
    "real": (frozenset({float, int}), str),
    "double precision": (frozenset({float, int}), str),
    "numeric": (frozenset({int, float, Decimal}), str),
    "text": (frozenset({str}), str),
    "character varying": (frozenset({str}), str),
    "boolean": (frozenset({bool}), lambda v: "t" if v else "f"),
    "date": (frozenset({date}), date.isoformat),
    "timestamp without time zone": (frozenset({datetime}), datetime.isoformat),
    "timestamp with time zone": (frozenset({datetime}), datetime.isoformat),
    "interval": (frozenset({timedelta}), _interval_text),
    "uuid": (frozenset({uuid.UUID, str}), str),
    "json": (frozenset({dict, list, str, int, float, bool}), _json_text),
    "jsonb": (frozenset({dict, list, str, int, float, bool}), _json_text),
    "bytea": (frozenset({bytes, bytearray, memoryview}), _bytea_text),
}


# Checked Python values of these types convert to Arrow without loss, so rows of tables whose every
# column is one of them go as binary COPY too (the server then parses nothing: a third less COPY time).
_ROWS_AS_BINARY = frozenset({
    "smallint", "integer", "bigint", "double precision", "boolean", "date", "text", "character varying",
    "timestamp with time zone", "timestamp without time zone",
})


class TableEncoder:
    """Encodes every piece of one batch window for one table into its payloads."""

    def __init__(self, dataset: str, table: Hypertable, start: datetime, end: datetime, *, binary: bool = True) -> None:
        """``binary=False`` keeps to COPY text and CSV, what ``psql \\copy`` sends (the benchmarks' bare COPY)."""
        self.binary = binary
        self.dataset = dataset
        self.table = table
        self.start = start
        self.end = end
        self.out = TablePayloads(table)
        self.columns = table.cols
        self.kinds = [c.parsed for c in self.columns]
        self.names = table.column_names
        self.time_index = table.time_index
        self._row_number = 0  # across pieces, for messages
        self._rows_as_binary: bool | None = None  # decided at the first rows (pyarrow is imported only then)

    # -- messages -------------------------------------------------------

    def where(self) -> str:
        return (
            f"dataset {self.dataset!r}, table {self.table.qualified}, window "
            f"[{self.start.isoformat()}, {self.end.isoformat()})"
        )

    def bad(self, detail: str, origin: str = "") -> BadRow:
        return BadRow(f"{self.where()}: {detail}" + (f" (in {origin})" if origin else ""))

    def _extra(self, present: Iterable[str], origin: str) -> None:
        extra = tuple(sorted(set(present) - set(self.names)))
        key = (self.dataset, self.table.qualified, extra)
        if extra and key not in _warned_extra:
            _warned_extra.add(key)
            log.info("%s: source columns %s are not table columns; ignored%s", self.where(), list(extra),
                     f" ({origin})" if origin else "")

    def _missing(self, present: Iterable[str], origin: str) -> None:
        have = set(present)
        missing = [c for c in self.names if c not in have]
        if missing:
            raise self.bad(f"the source has no column {missing[0]!r} (table columns {list(self.names)}; "
                           f"source columns {sorted(have)})", origin)

    # -- entry point ----------------------------------------------------

    def add(self, data: Any, origin: str = "") -> None:
        """Encode one piece: Arrow/pandas data, a RowBatch, or an iterable of rows."""
        from tidemark.load import arrow_data

        if arrow_data.is_columnar(data):
            for batch in arrow_data.record_batches(data):
                self._add_arrow(batch, origin)
        elif isinstance(data, RowBatch):
            self._missing(data.columns, origin or data.origin)
            self._extra(data.columns, origin or data.origin)
            positions = [data.columns.index(n) for n in self.names]
            rows = data.rows
            for i in range(0, len(rows), ROWS_PER_CHUNK):
                chunk = rows[i:i + ROWS_PER_CHUNK]
                columns = list(zip(*chunk))  # a cursor's rows all have its width: transpose, then pick by name
                self._add_columns([columns[p] for p in positions], chunk, origin or data.origin)
        else:
            it = iter(data)
            while True:
                chunk = list(islice(it, ROWS_PER_CHUNK))
                if not chunk:
                    break
                if isinstance(chunk[0], dict):
                    self._add_dicts(chunk, origin)
                else:
                    self._add_tuples(chunk, chunk, origin)

    def finish(self) -> TablePayloads:
        return self.out

    # -- the row path ---------------------------------------------------

    def _add_dicts(self, chunk: list[Any], origin: str) -> None:
        if not all(isinstance(r, dict) for r in chunk):
            n = next(i for i, r in enumerate(chunk) if not isinstance(r, dict))
            raise self.bad(f"row {self._row_number + n} is a {type(chunk[n]).__name__}, the rows before it dicts: "
                           f"{chunk[n]!r}", origin)
        self._extra(chunk[0].keys(), origin)
        tuples = []
        names = self.names
        try:
            for r in chunk:
                tuples.append(tuple([r[n] for n in names]))
        except KeyError:
            bad = len(tuples)
            self._missing(chunk[bad].keys(), origin + (", " if origin else "") + f"row {self._row_number + bad}")
        self._add_tuples(tuples, chunk, origin)

    def _add_tuples(self, rows: list[Any], originals: Sequence[Any], origin: str) -> None:
        width = len(self.names)
        if set(map(len, rows)) != {width}:
            n = next(i for i, r in enumerate(rows) if len(r) != width)
            raise self.bad(
                f"row {self._row_number + n} has {len(rows[n])} values, expected {width} {self.names}: {originals[n]!r}",
                origin,
            )
        self._add_columns(list(zip(*rows)), originals, origin)

    def _add_columns(self, columns: Sequence[Sequence[Any]], originals: Sequence[Any], origin: str) -> None:
        """Check and encode one chunk given column by column, in the table's column order.

        Binary COPY through Arrow where every column allows it; the COPY text
        format otherwise, and for a chunk holding a value beyond its Arrow type
        (an int too big for the column): the server then names the value.
        """
        from tidemark.load import arrow_data

        self._check_time(columns[self.time_index], originals, origin)
        checked = [(values, self._check_column(i, values, originals, origin))
                   for i, values in enumerate(map(list, columns))]
        if self._rows_as_binary is None:
            self._rows_as_binary = (self.binary and all(not k.array and k.base in _ROWS_AS_BINARY for k in self.kinds)
                                    and arrow_data.available())
        if self._rows_as_binary:
            batch = arrow_data.from_rows([values for values, _ in checked], self.kinds, self.names)
            if batch is not None:
                spool = self.out.spool("binary")
                before = spool.file.tell()
                arrow_data.write_binary(batch, self.kinds, spool.file)
                spool.size += spool.file.tell() - before
                spool.rows += len(originals)
                self._row_number += len(originals)
                return
        texts = [self._render(i, values, nulls) for i, (values, nulls) in enumerate(checked)]
        payload = ("\n".join(map("\t".join, zip(*texts))) + "\n").encode()
        spool = self.out.spool("text")
        spool.file.write(payload)
        spool.rows += len(originals)
        spool.size += len(payload)
        self._row_number += len(originals)

    def _check_time(self, values: Sequence[Any], originals: Sequence[Any], origin: str) -> None:
        col = self.table.time_column
        try:
            if set(map(type, values)) != {datetime} or any(v.utcoffset() is None for v in dict.fromkeys(values)):
                raise TypeError
            lo, hi = min(values), max(values)
        except (TypeError, AttributeError):
            n = next(i for i, v in enumerate(values) if not (isinstance(v, datetime) and v.utcoffset() is not None))
            raise self.bad(f"row {self._row_number + n} has a {col} that is not a timezone-aware datetime: "
                           f"{originals[n]!r}", origin) from None
        if lo < self.start or hi >= self.end:
            n = next(i for i, v in enumerate(values) if not self.start <= v < self.end)
            raise self.bad(f"row {self._row_number + n} has {col}={values[n].isoformat()} outside the batch window: "
                           f"{originals[n]!r}", origin)

    def _check_column(self, i: int, values: list[Any], originals: Sequence[Any], origin: str) -> bool:
        """Refuse a value the column cannot take (type, NULL, time zone, array element); True if NULLs."""
        column, kind = self.columns[i], self.kinds[i]
        types = set(map(type, values))
        nulls = _NoneType in types
        if nulls:
            if not column.nullable:
                n = values.index(None)
                raise self.bad(f"row {self._row_number + n} has NULL in NOT NULL column {column.name!r}: "
                               f"{originals[n]!r}", origin)
            types.discard(_NoneType)
        allowed = frozenset({list, tuple}) if kind.array else _SCALAR[kind.base][0]
        if not types <= allowed:
            n = next(k for k, v in enumerate(values) if v is not None and type(v) not in allowed)
            raise self.bad(f"row {self._row_number + n} column {column.name!r} ({kind.short}) got "
                           f"{type(values[n]).__name__} {values[n]!r}: {originals[n]!r}", origin)
        if kind.base == "timestamp with time zone" and not kind.array and i != self.time_index:
            naive = next((k for k, v in enumerate(values) if v is not None and v.utcoffset() is None), None)
            if naive is not None:
                raise self.bad(f"row {self._row_number + naive} column {column.name!r} (timestamptz) got a naive "
                               f"datetime {values[naive]!r}: {originals[naive]!r}", origin)
        if kind.base == "timestamp without time zone" and not kind.array:
            aware = next((k for k, v in enumerate(values) if v is not None and v.utcoffset() is not None), None)
            if aware is not None:
                raise self.bad(f"row {self._row_number + aware} column {column.name!r} (timestamp without time zone) "
                               f"got a timezone-aware datetime {values[aware]!r}; use timestamptz or drop the zone",
                               origin)
        if kind.array:
            self._check_array_elements(column, kind, values, originals, origin)
        return nulls

    def _render(self, i: int, values: list[Any], nulls: bool) -> list[str]:
        """A checked column's values in COPY's text format."""
        kind = self.kinds[i]
        if kind.array:
            convert: Callable[[Any], str] = lambda v: "{" + ",".join(_array_element(kind, e) for e in v) + "}"  # noqa: E731
        else:
            convert = _SCALAR[kind.base][1]
        if kind.base.startswith("timestamp") and not kind.array:
            # Rows share timestamps (a ledger's transactions, a minute's readings): render each once.
            unique = dict.fromkeys(values)
            unique.pop(None, None)
            rendered = dict(zip(unique, map(datetime.isoformat, unique)))
            if nulls:
                rendered[None] = _NULL
            return list(map(rendered.__getitem__, values))
        if nulls:
            texts = [_NULL if v is None else convert(v) for v in values]
            strings = [t for t in texts if t is not _NULL]
            if strings and _escape_all(strings) is not strings:
                return [t if t is _NULL else t.translate(_ESCAPES) for t in texts]
            return texts
        return _escape_all(list(map(convert, values)))

    def _check_array_elements(
        self, column: Column, kind: ColumnType, values: list[Any], originals: Sequence[Any], origin: str
    ) -> None:
        allowed = _SCALAR[kind.base][0]
        for n, v in enumerate(values):
            if v is None:
                continue
            for e in v:
                if e is not None and type(e) not in allowed:
                    raise self.bad(f"row {self._row_number + n} column {column.name!r} ({kind.short}) has element "
                                   f"{type(e).__name__} {e!r}: {originals[n]!r}", origin)

    # -- the Arrow path -------------------------------------------------

    def _add_arrow(self, batch: Any, origin: str) -> None:
        from tidemark.load import arrow_data

        if batch.num_rows == 0:
            return
        self._missing(batch.schema.names, origin)
        self._extra(batch.schema.names, origin)
        prepared = arrow_data.prepare(self, batch, origin)
        fmt = None if prepared is None else arrow_data.copy_format(prepared, self.kinds, binary=self.binary)
        if prepared is None or fmt is None:  # a column neither binary COPY nor CSV carries: the row path
            rows = batch.select(list(self.names)).to_pylist()
            if rows:
                self._add_dicts(rows, origin)
            return
        if fmt == "binary":
            spool = self.out.spool("binary")
            before = spool.file.tell()
            arrow_data.write_binary(prepared, self.kinds, spool.file)
        else:
            spool = self.out.spool("csv")
            before = spool.file.tell()
            arrow_data.write_csv(prepared, spool.file)
        spool.size += spool.file.tell() - before
        spool.rows += prepared.num_rows
        self._row_number += prepared.num_rows


def encode_window(
    dataset: str, tables: Sequence[Hypertable], pieces: Iterable[tuple[Any, ...]], start: datetime, end: datetime
) -> dict[str, TablePayloads]:
    """Encode a source's pieces for the given tables; a piece for any other table is an error."""
    encoders = {t.name: TableEncoder(dataset, t, start, end) for t in tables}
    try:
        for piece in pieces:
            name, data, *where = piece
            enc = encoders.get(name)
            if enc is None:
                raise BadRow(f"dataset {dataset!r}: the source yielded data for {name!r}, which is not one of the "
                             f"tables it feeds {sorted(encoders)}")
            enc.add(data, str(where[0]) if where else "")
    except BaseException:
        for e in encoders.values():
            e.out.close()
        raise
    return {name: e.finish() for name, e in encoders.items()}
