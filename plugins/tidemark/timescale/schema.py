"""Creating a dataset's hypertables and Tidemark's own bookkeeping, idempotently.

Every DAG run calls ``ensure_schema`` first, so it must be cheap and safe to
repeat and to race: it serialises itself on an advisory lock, creates only
what is missing and never alters compression settings of a table that already
has them (TimescaleDB refuses that once chunks are compressed).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from tidemark.model.column_types import parse_type
from tidemark.connection import one
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.errors import InvalidInput
from tidemark.state import tables

_SCHEMA_LOCK = 0x7469_6465  # "tide": one advisory lock for all schema changes


def table_ident(table: Hypertable) -> sql.Identifier:
    return sql.Identifier(table.schema, table.name)


def regclass_text(conn: psycopg.Connection, table: Hypertable) -> str:
    """The quoted qualified name, as a value for ``::regclass`` parameters."""
    return table_ident(table).as_string(conn)


def _column_list(conn: psycopg.Connection, names: tuple[str, ...]) -> str:
    return ",".join(sql.Identifier(n).as_string(conn) for n in names)


def ensure_bookkeeping(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        tables.ensure(conn)


def ensure_schema(conn: psycopg.Connection, dataset: Dataset) -> Dataset:
    """Create what is missing; returns the dataset with every table's columns known."""
    ensure_bookkeeping(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        resolved = resolve(conn, dataset)
        for table in resolved.tables:
            _ensure_hypertable(conn, table)
    return resolved


def existing_columns(conn: psycopg.Connection, table: Hypertable) -> list[tuple[str, str, bool]] | None:
    """(name, format_type, nullable) of an existing table's columns, or None if there is no such table."""
    oid = conn.execute("SELECT to_regclass(%s)::oid", (regclass_text(conn, table),)).fetchone()
    if not oid or oid[0] is None:
        return None
    return [
        (r[0], r[1], r[2])
        for r in conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), NOT attnotnull FROM pg_catalog.pg_attribute"
            " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid[0],),
        ).fetchall()
    ]


def resolve(conn: psycopg.Connection, dataset: Dataset) -> Dataset:
    """Fill in columns of tables declared without them, and check declared ones against existing tables.

    Refuses (InvalidInput, before any write) a table that neither exists nor
    declares its columns, a declared column the existing table lacks, or one
    whose declared type differs from the table's.
    """
    tables = []
    for table in dataset.tables:
        found = existing_columns(conn, table)
        if found is None:
            if table.columns is None:
                raise InvalidInput(
                    f"dataset {dataset.name!r}: table {table.qualified} does not exist and declares no columns; "
                    "create it or declare its columns"
                )
            tables.append(table)
            continue
        actual = {name: (typ, nullable) for name, typ, nullable in found}
        if table.columns is None:
            try:
                cols = [Column(name, typ, nullable) for name, typ, nullable in found]
            except InvalidInput as exc:
                raise InvalidInput(
                    f"dataset {dataset.name!r}: table {table.qualified} has a column Tidemark cannot load ({exc}); "
                    "declare the columns to load"
                ) from None
            tables.append(table.with_columns(cols))
            continue
        for col in table.columns:
            if col.name not in actual:
                raise InvalidInput(
                    f"dataset {dataset.name!r}: table {table.qualified} has no column {col.name!r} "
                    f"(it has {list(actual)})"
                )
            typ = actual[col.name][0]
            try:
                same = parse_type(typ).sql == col.type
            except InvalidInput:
                same = False
            if not same:
                raise InvalidInput(
                    f"dataset {dataset.name!r}: column {table.qualified}.{col.name} is declared {col.type} but the "
                    f"table has {typ}"
                )
        tables.append(table)
    return dataset.with_tables(tables)


def _ensure_hypertable(conn: psycopg.Connection, table: Hypertable) -> None:
    ident = table_ident(table)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name),
            sql.SQL(c.type),  # rendered from the closed grammar of tidemark.model.column_types, never user text
            sql.SQL("" if c.nullable else " NOT NULL"),
        )
        for c in table.cols
    )
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(ident, columns))
    regclass = regclass_text(conn, table)
    is_hyper = one(conn.execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = %s AND hypertable_name = %s)",
        (table.schema, table.name),
    ))[0]
    if not is_hyper:
        has_rows = one(conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(ident)))[0]
        if has_rows:
            raise InvalidInput(
                f"table {table.qualified} exists with rows but is not a hypertable; convert it first "
                f"(SELECT create_hypertable('{table.qualified}', by_range('{table.time_column}'), migrate_data => true))"
            )
        conn.execute(
            "SELECT create_hypertable(%s::regclass, by_range(%s, %s::interval), if_not_exists => true)",
            (regclass, table.time_column, table.chunk_interval),
        )
    enabled = conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = %s AND hypertable_name = %s",
        (table.schema, table.name),
    ).fetchone()
    if not (enabled and enabled[0]):
        # Both set explicitly, the undeclared ones to what TimescaleDB would pick for a table like this (no
        # segmentby, the time column DESC): the layout is then fixed when the table is made, not chosen
        # per chunk later, so a direct COPY can be sorted by it (tidemark.timescale.columnstore.chunk_order).
        orderby = (_column_list(conn, table.orderby) if table.orderby
                   else sql.Identifier(table.time_column).as_string(conn) + " DESC")
        options: list[sql.Composable] = [
            sql.SQL("timescaledb.compress"),
            sql.SQL("timescaledb.compress_segmentby = {}").format(sql.Literal(_column_list(conn, table.segmentby))),
            sql.SQL("timescaledb.compress_orderby = {}").format(sql.Literal(orderby)),
        ]
        conn.execute(sql.SQL("ALTER TABLE {} SET ({})").format(ident, sql.SQL(", ").join(options)))
    conn.execute(
        "SELECT add_compression_policy(%s::regclass, compress_after => %s::interval, if_not_exists => true)",
        (regclass, table.compress_after),
    )
