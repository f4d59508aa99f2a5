"""What a dataset is: hypertables (with their compression layout) and where their rows come from.

A declaration is data, checked when it is made: identifiers reach the
database only through ``psycopg.sql.Identifier`` and are refused when they
could not be the name the user meant (PostgreSQL silently truncates names
over 63 bytes; quotes, semicolons and control characters are typos or
attacks); column types are parsed into a closed grammar
(``tidemark.column_types``). Nothing here connects to anything: a DAG file
builds every dataset at parse time.

Which datasets exist is the catalogue's business (``tidemark.catalog``);
``get``/``names`` below are its front door for the rest of the core.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tidemark.column_types import ColumnType, parse_type
from tidemark.errors import InvalidInput
from tidemark.timeparse import parse_interval

if TYPE_CHECKING:
    from tidemark.sources.base import Source

DATASET_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FORBIDDEN_IN_IDENTIFIERS = re.compile(r"[\"';\\\x00-\x1f\x7f]")


def check_identifier(value: object, what: str) -> str:
    """A table, schema or column name, or InvalidInput saying why not."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string, got {value!r}")
    if len(value.encode()) > 63:
        raise InvalidInput(f"{what} {value!r} is longer than 63 bytes (PostgreSQL would silently truncate it)")
    if _FORBIDDEN_IN_IDENTIFIERS.search(value):
        raise InvalidInput(f"{what} {value!r} contains a quote, semicolon, backslash or control character")
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


def _interval(value: timedelta | str, what: str) -> timedelta:
    td = parse_interval(value) if isinstance(value, str) else value
    if not isinstance(td, timedelta) or td <= timedelta(0):
        raise InvalidInput(f"{what} must be a positive interval such as '7 days', got {value!r}")
    return td


def _names(value: Iterable[str] | str, what: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    return tuple(check_identifier(v, what) for v in items)


@dataclass(frozen=True)
class Hypertable:
    """One hypertable of a dataset.

    ``columns`` may be None when the table already exists: they are then read
    from the database (``tidemark.schema.resolve``) before anything loads.
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
        object.__setattr__(self, "chunk_interval", _interval(self.chunk_interval, f"table {self.name!r}: chunk_interval"))
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
                if name not in names:
                    raise InvalidInput(f"table {self.name!r}: {what} {name!r} is not one of its columns {names}")
        time_col = cols[names.index(self.time_column)]
        if not time_col.parsed.is_timestamptz or time_col.nullable:
            raise InvalidInput(
                f"table {self.name!r}: time_column {self.time_column!r} must be a NOT NULL timestamptz "
                f"(it is {time_col.parsed.short}{', nullable' if time_col.nullable else ''})"
            )

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
    # Direct-to-columnstore COPY (tidemark.columnstore): None = auto (on where every table allows it).
    direct_compress: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not DATASET_NAME.match(self.name):
            raise InvalidInput(f"dataset name {self.name!r} must match [a-z_][a-z0-9_]{{0,62}}")
        tables = tuple(self.tables)
        if not tables:
            raise InvalidInput(f"dataset {self.name!r} declares no tables")
        object.__setattr__(self, "tables", tables)
        keys = [(t.schema, t.name) for t in tables]
        if len(set(keys)) != len(keys):
            raise InvalidInput(f"dataset {self.name!r} declares a table twice: {[t.qualified for t in tables]}")
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


def ledgers_dataset(name: str = "ledgers", schema: str = "public", seed: int = 42) -> Dataset:
    """The demo dataset; tests give it their own name and schema to stay isolated."""
    from tidemark.sources.synthetic import ledger_source

    six_hours = timedelta(hours=6)
    ts = Column("close_time", "timestamptz")
    return Dataset(
        name=name,
        description="Synthetic ledger stream: a ledger about every 5 s, each with transactions and operations.",
        source=ledger_source(seed),
        origin="built in",
        tables=(
            Hypertable(
                name="ledgers",
                time_column="close_time",
                columns=(
                    ts,
                    Column("sequence", "bigint"),
                    Column("hash", "text"),
                    Column("tx_count", "integer"),
                    Column("op_count", "integer"),
                    Column("total_fees", "bigint"),
                ),
                chunk_interval=six_hours,
                schema=schema,
                orderby=("close_time", "sequence"),
            ),
            Hypertable(
                name="transactions",
                time_column="close_time",
                columns=(
                    ts,
                    Column("ledger_sequence", "bigint"),
                    Column("tx_index", "integer"),
                    Column("hash", "text"),
                    Column("account", "text"),
                    Column("fee", "bigint"),
                    Column("op_count", "integer"),
                    Column("successful", "boolean"),
                ),
                chunk_interval=six_hours,
                schema=schema,
                orderby=("close_time", "ledger_sequence", "tx_index"),
            ),
            Hypertable(
                name="operations",
                time_column="close_time",
                columns=(
                    ts,
                    Column("ledger_sequence", "bigint"),
                    Column("tx_index", "integer"),
                    Column("op_index", "integer"),
                    Column("op_type", "text"),
                    Column("asset", "text"),
                    Column("amount", "bigint"),
                ),
                chunk_interval=six_hours,
                schema=schema,
                segmentby=("op_type",),
                orderby=("close_time", "ledger_sequence", "tx_index", "op_index"),
            ),
        ),
    )


def names() -> list[str]:
    from tidemark import catalog

    return catalog.names()


def get(name: str) -> Dataset:
    from tidemark import catalog

    return catalog.get(name)


def register(dataset: Dataset | Any, make: Any = None) -> None:
    """Declare a dataset from code (``register(Dataset(...))``); the catalogue refuses duplicates."""
    from tidemark import catalog

    catalog.register(dataset, make)


def unregister(name: str) -> None:
    from tidemark import catalog

    catalog.unregister(name)
