"""What a dataset is: hypertables (with their compression layout) plus a source of rows.

The spec is data, not SQL: every table and column name reaches the database
only through ``psycopg.sql.Identifier``, and column types come from a closed
list, so a hostile spec (quotes, semicolons in names) can never inject SQL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from tidemark.errors import InvalidInput

# Column types a spec may use, mapped to the Python types a source must yield.
COLUMN_TYPES: Mapping[str, tuple[type, ...]] = {
    "timestamptz": (datetime,),
    "bigint": (int,),
    "integer": (int,),
    "smallint": (int,),
    "double precision": (float, int),
    "numeric": (int, float),
    "text": (str,),
    "boolean": (bool,),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise InvalidInput(
                f"column {self.name!r} has type {self.type!r}; supported types: {', '.join(COLUMN_TYPES)}"
            )
        if not self.name:
            raise InvalidInput("a column name must not be empty")


@dataclass(frozen=True)
class Hypertable:
    name: str
    time_column: str
    columns: tuple[Column, ...]
    chunk_interval: timedelta
    segmentby: tuple[str, ...] = ()
    orderby: tuple[str, ...] = ()
    schema: str = "public"
    # How old a chunk must be before the table's own compression policy takes it.
    compress_after: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise InvalidInput(f"hypertable {self.name!r} repeats a column name: {names}")
        for wanted, what in [((self.time_column,), "time column"), (self.segmentby, "segmentby"), (self.orderby, "orderby")]:
            for name in wanted:
                if name not in names:
                    raise InvalidInput(f"hypertable {self.name!r}: {what} {name!r} is not one of its columns {names}")
        time_col = self.columns[names.index(self.time_column)]
        if time_col.type != "timestamptz" or time_col.nullable:
            raise InvalidInput(f"hypertable {self.name!r}: time column {self.time_column!r} must be a NOT NULL timestamptz")
        if self.chunk_interval <= timedelta(0):
            raise InvalidInput(f"hypertable {self.name!r}: chunk_interval must be positive")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def time_index(self) -> int:
        return self.column_names.index(self.time_column)


class Source(Protocol):
    """Where a dataset's rows come from; must be deterministic per window so replays are exact."""

    def rows(self, table: str, start: datetime, end: datetime) -> Iterable[tuple[object, ...]]: ...

    def expected_counts(self, start: datetime, end: datetime) -> dict[str, int]: ...


@dataclass(frozen=True)
class Dataset:
    name: str
    tables: tuple[Hypertable, ...]
    source_factory: Callable[[], Source] = field(compare=False)
    description: str = ""

    def table(self, name: str) -> Hypertable:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"dataset {self.name!r} has no table {name!r}")

    def source(self) -> Source:
        return self.source_factory()


@functools.lru_cache(maxsize=8)
def _ledger_source(seed: int) -> Source:
    """One source per seed and process: building its period tables costs ~0.1 s, a batch may take less.

    Safe to share: a LedgerSource only reads its precomputed tables.
    """
    from tidemark.synthetic import LedgerSource

    return LedgerSource(seed=seed)


def ledgers_dataset(name: str = "ledgers", schema: str = "public", seed: int = 42) -> Dataset:
    """The demo dataset; tests give it their own name and schema to stay isolated."""
    six_hours = timedelta(hours=6)
    ts = Column("close_time", "timestamptz")
    return Dataset(
        name=name,
        description="Synthetic ledger stream: a ledger about every 5 s, each with transactions and operations.",
        source_factory=lambda: _ledger_source(seed),
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


_REGISTRY: dict[str, Callable[[], Dataset]] = {"ledgers": ledgers_dataset}


def register(name: str, make: Callable[[], Dataset]) -> None:
    """Add a dataset (tests use this for hostile specs and fault-injecting sources)."""
    _REGISTRY[name] = make


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Dataset:
    try:
        make = _REGISTRY[name]
    except KeyError:
        raise InvalidInput(f"unknown dataset {name!r}; choose one of: {', '.join(names())}") from None
    return make()
