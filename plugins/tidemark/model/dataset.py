"""What a dataset is: hypertables (with their compression layout) and where their rows come from.

A declaration is data, checked when it is made: identifiers reach the
database only through ``psycopg.sql.Identifier`` and are refused when they
could not be the name the user meant (PostgreSQL silently truncates names
over 63 bytes; quotes, semicolons, control characters and invisible
Unicode ones such as the bidi override U+202E are typos or attacks); column
types are parsed into a closed grammar (``tidemark.model.column_types``).
Nothing here connects to anything: a DAG file builds every dataset at parse
time.

What a source must do is documented on :class:`Source` below; the sources
Tidemark ships are in ``tidemark.sources``. Which datasets exist is the
catalogue's business (``tidemark.declare.catalog``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from tidemark.errors import InvalidInput
from tidemark.model.column_types import ColumnType, parse_type
from tidemark.model.schedule import Live, parse_schedule
from tidemark.model.timeparse import format_interval, parse_interval

Piece = tuple[Any, ...]  # (table name, data) or (table name, data, origin)


@dataclass(frozen=True)
class RowBatch:
    """Rows as tuples plus the names of their positions (a database cursor's shape)."""

    columns: tuple[str, ...]
    rows: Sequence[tuple[Any, ...]]
    origin: str = ""


@runtime_checkable
class Source(Protocol):
    """The source contract: what Tidemark asks of anything that produces a dataset's rows.

    A source is handed a batch window ``[start, end)`` and the hypertables it
    feeds, and yields ``(table name, data)`` pieces until the window is
    exhausted (or ``(table name, data, origin)``, where ``origin`` says where
    the data came from, e.g. a file, for error messages). Everything else (checking, encoding, COPY, retries, the ledger,
    verification) is Tidemark's.

    The promises a source makes:

    * **Only its window.** Every row it yields has ``start <= time < end`` in the
      table's time column; a row outside is refused (the batch fails, nothing is
      written). A window must yield the same rows every time it is read, so a
      replay after a crash converges to the same data.
    * **Pieces, not everything at once.** Memory stays bounded when a source
      yields many moderate pieces (a few thousand to a few hundred thousand rows
      each) instead of one huge one; Tidemark spools each piece to a temporary
      file as it arrives.
    * **Data Tidemark understands.** A piece is one of
      - a ``pyarrow.RecordBatch`` or ``pyarrow.Table`` (the columnar fast path:
        no Python loop per value), or a ``pandas.DataFrame`` (converted to Arrow;
        NaN in a float column becomes NULL);
      - a :class:`RowBatch` (rows as tuples with column names, what a SQL cursor
        gives);
      - any other iterable of rows: ``dict`` rows are matched to columns by name,
        ``tuple`` rows by position in the table's declared column order.
      Columns are matched by name: a table column the data lacks is an error
      before any write; extra columns are ignored (logged once).
    * **Secrets stay in Airflow connections.** A source refers to a ``conn_id``
      and never puts a DSN, password or credentialed URL in a message.

    Optional abilities, discovered with ``getattr``:

    * ``expected_counts(tables, start, end) -> Mapping[str, int] | None``: the
      exact rows per table in a window, if the source can count cheaply; the
      backfill's verification then checks the tables against the source as well
      as against the ledger.
    * ``tip(tables) -> datetime | None``: how far the data reaches, for live
      ingestion and its hand-over to catchup.
    * ``describe() -> str``: a one-line, secret-free description for logs.
    * ``check(tables, start, end) -> None``: raise ``InvalidInput`` naming the
      table and the key to fix if the source could never serve the tables (a
      query that cannot be prepared, a missing column); the plan asks before
      its first write, so such a source fails once, not every batch.

    A source only reads: it must not write to anything, least of all the target.
    """

    def read(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> Iterable[Piece]: ...


DATASET_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FORBIDDEN_IN_IDENTIFIERS = re.compile(r"[\"';\\\x00-\x1f\x7f]")
# Unicode control, format (bidi overrides, zero-width), line/paragraph separator, private-use and surrogate characters:
# a name holding one reads as another name, or as nothing, wherever it is shown.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs"})
MIN_CHUNK_INTERVAL = timedelta(minutes=1)


def check_identifier(value: object, what: str) -> str:
    """A table, schema or column name, or InvalidInput saying why not."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string, got {value!r}")
    if len(value.encode()) > 63:
        raise InvalidInput(f"{what} {value!r} is longer than 63 bytes (PostgreSQL would silently truncate it)")
    if _FORBIDDEN_IN_IDENTIFIERS.search(value):
        raise InvalidInput(f"{what} {value!r} contains a quote, semicolon, backslash or control character")
    hidden = next((c for c in value if unicodedata.category(c) in _INVISIBLE_CATEGORIES), None)
    if hidden is not None:
        raise InvalidInput(f"{what} {value!r} contains the invisible or control character U+{ord(hidden):04X} "
                           f"({unicodedata.name(hidden, unicodedata.category(hidden))})")
    return value


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = False

    def __post_init__(self) -> None:
        check_identifier(self.name, "column name")
        object.__setattr__(self, "type", parse_type(self.type).sql)

    @property
    def parsed(self) -> ColumnType:
        return parse_type(self.type)


def check_dataset_name(value: object) -> str:
    """A dataset's name, or InvalidInput: it names staging schemas and Airflow params, so it stays a plain identifier."""
    if not isinstance(value, str) or not DATASET_NAME.match(value):
        raise InvalidInput(f"dataset name {value!r} must match [a-z_][a-z0-9_]{{0,62}}")
    return value


def check_column_ref(table: str, what: str, name: str, columns: Sequence[Column]) -> None:
    """InvalidInput unless ``name`` is one of ``columns``; shared with declarations, which report it at its own key."""
    names = [c.name for c in columns]
    if name not in names:
        raise InvalidInput(f"table {table!r}: {what} {name!r} is not one of its columns {names}")


def check_time_column(table: str, column: Column) -> None:
    """InvalidInput unless ``column`` can place every row in a chunk and a batch window: a NOT NULL timestamptz."""
    if not column.parsed.is_timestamptz or column.nullable:
        raise InvalidInput(
            f"table {table!r}: time_column {column.name!r} must be a NOT NULL timestamptz "
            f"(it is {column.parsed.short}{', nullable' if column.nullable else ''})"
        )


def _interval(value: timedelta | str, what: str) -> timedelta:
    td = parse_interval(value) if isinstance(value, str) else value
    if not isinstance(td, timedelta) or td <= timedelta(0):
        raise InvalidInput(f"{what} must be a positive interval such as '7 days', got {value!r}")
    return td


def check_chunk_interval(table: str, value: timedelta) -> timedelta:
    """InvalidInput unless ``value`` is at least a minute: finer chunks would make one table per few rows."""
    if value < MIN_CHUNK_INTERVAL:
        raise InvalidInput(f"table {table!r}: chunk_interval must be at least 1 minute, got {format_interval(value)} "
                           "(a hypertable makes a table per chunk)")
    return value


def _names(value: Iterable[str] | str, what: str) -> tuple[str, ...]:
    if not isinstance(value, (str, list, tuple)):
        raise InvalidInput(f"{what}s must be a column name or a list of column names, got {type(value).__name__}")
    items = (value,) if isinstance(value, str) else tuple(value)
    return tuple(check_identifier(v, what) for v in items)


@dataclass(frozen=True)
class Hypertable:
    """One hypertable of a dataset.

    ``columns`` may be None when the table already exists: they are then read
    from the database (``tidemark.timescale.schema.resolve``) before anything loads.
    ``source`` feeds this table only; without one, the dataset's source does.
    """

    name: str
    time_column: str
    columns: tuple[Column, ...] | None = None
    chunk_interval: timedelta = timedelta(days=7)
    segmentby: tuple[str, ...] = ()
    orderby: tuple[str, ...] = ()
    schema: str = "public"
    # How old a chunk must be before the table's own compression policy takes it.
    compress_after: timedelta = timedelta(days=7)
    source: Source | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_identifier(self.name, "table name")
        check_identifier(self.schema, f"table {self.name!r}: schema")
        check_identifier(self.time_column, f"table {self.name!r}: time_column")
        object.__setattr__(self, "chunk_interval", check_chunk_interval(
            self.name, _interval(self.chunk_interval, f"table {self.name!r}: chunk_interval")))
        object.__setattr__(self, "compress_after", _interval(self.compress_after, f"table {self.name!r}: compress_after"))
        object.__setattr__(self, "segmentby", _names(self.segmentby, f"table {self.name!r}: segmentby column"))
        object.__setattr__(self, "orderby", _names(self.orderby, f"table {self.name!r}: orderby column"))
        if self.columns is not None:
            cols = tuple(c if isinstance(c, Column) else Column(**c) for c in self.columns)
            object.__setattr__(self, "columns", cols)
            self._check_columns(cols)

    def _check_columns(self, cols: tuple[Column, ...]) -> None:
        names = [c.name for c in cols]
        if len(set(names)) != len(names):
            raise InvalidInput(f"table {self.name!r} repeats a column name: {names}")
        wanted: Sequence[tuple[tuple[str, ...], str]] = [
            ((self.time_column,), "time_column"), (self.segmentby, "segmentby"), (self.orderby, "orderby")
        ]
        for group, what in wanted:
            for name in group:
                check_column_ref(self.name, what, name, cols)
        check_time_column(self.name, cols[names.index(self.time_column)])

    @property
    def resolved(self) -> bool:
        return self.columns is not None

    @property
    def cols(self) -> tuple[Column, ...]:
        if self.columns is None:
            raise InvalidInput(
                f"table {self.schema}.{self.name}: columns are not declared and were not read from the database "
                "yet (the table must exist, or declare its columns)"
            )
        return self.columns

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cols)

    @property
    def time_index(self) -> int:
        return self.column_names.index(self.time_column)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def with_columns(self, columns: Sequence[Column]) -> Hypertable:
        return replace(self, columns=tuple(columns))


@dataclass(frozen=True)
class Dataset:
    name: str
    tables: tuple[Hypertable, ...]
    source: Source | None = field(default=None, compare=False)
    description: str = ""
    # Where it was declared (a file path, module or entry point), for messages.
    origin: str = field(default="", compare=False)
    # Direct-to-columnstore COPY (tidemark.timescale.columnstore): None = auto (on where every table allows it).
    direct_compress: bool | None = None
    # Scheduled backfill runs over each data interval (cron or preset); None: manual runs only.
    schedule: str | None = None
    # Live ingestion (its own DAG); None: the dataset has no live DAG.
    live: Live | None = None

    def __post_init__(self) -> None:
        check_dataset_name(self.name)
        tables = tuple(self.tables)
        if not tables:
            raise InvalidInput(f"dataset {self.name!r} declares no tables")
        object.__setattr__(self, "tables", tables)
        keys = [(t.schema, t.name) for t in tables]
        if len(set(keys)) != len(keys):
            raise InvalidInput(f"dataset {self.name!r} declares a table twice: {[t.qualified for t in tables]}")
        if self.schedule is not None:
            object.__setattr__(self, "schedule", parse_schedule(self.schedule))
        if self.live is not None and not isinstance(self.live, Live):
            raise InvalidInput(f"dataset {self.name!r}: live must be a tidemark Live, got {type(self.live).__name__}")
        orphans = [t.name for t in tables if t.source is None and self.source is None]
        if orphans:
            raise InvalidInput(f"dataset {self.name!r}: tables {orphans} have no source and the dataset has none")

    def table(self, name: str) -> Hypertable:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"dataset {self.name!r} has no table {name!r}")

    @property
    def resolved(self) -> bool:
        return all(t.resolved for t in self.tables)

    def with_tables(self, tables: Sequence[Hypertable]) -> Dataset:
        return replace(self, tables=tuple(tables))

    def feeds(self) -> list[tuple[Source, tuple[Hypertable, ...]]]:
        """Each source with the tables it fills: the dataset's source takes every table without its own."""
        out: list[tuple[Source, tuple[Hypertable, ...]]] = []
        shared = tuple(t for t in self.tables if t.source is None)
        if shared and self.source is not None:
            out.append((self.source, shared))
        out.extend((t.source, (t,)) for t in self.tables if t.source is not None)
        return out
