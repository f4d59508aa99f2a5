"""Creating a dataset's hypertables and Tidemark's own bookkeeping, idempotently.

Every DAG run calls ``ensure_schema`` first, so it must be cheap and safe to
repeat and to race: it serialises itself on an advisory lock, creates only
what is missing and never alters compression settings of a table that already
has them (TimescaleDB refuses that once chunks are compressed).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from tidemark.datasets import Dataset, Hypertable

BOOKKEEPING = "tidemark"
_SCHEMA_LOCK = 0x7469_6465  # "tide": one advisory lock for all schema changes

_BOOKKEEPING_DDL = [
    "CREATE SCHEMA IF NOT EXISTS tidemark",
    # One row per loaded batch window, written in the batch's own transaction:
    # the ledger never claims rows that did not commit with it.
    """CREATE TABLE IF NOT EXISTS tidemark.batch_ledger (
        dataset text NOT NULL,
        window_start timestamptz NOT NULL,
        window_end timestamptz NOT NULL,
        row_counts jsonb NOT NULL,
        run_id text NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (dataset, window_start),
        CHECK (window_start < window_end))""",
    # Last time fully ingested per dataset (live ingestion and catchup publish).
    """CREATE TABLE IF NOT EXISTS tidemark.cursors (
        dataset text PRIMARY KEY,
        position timestamptz NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        updated_by text NOT NULL)""",
    # A backfill/catchup run's claim on a window and its progress, so a second
    # overlapping run can refuse up front and a restarted sensor can resume.
    """CREATE TABLE IF NOT EXISTS tidemark.runs (
        run_id text PRIMARY KEY,
        dataset text NOT NULL,
        kind text NOT NULL,
        window_start timestamptz NOT NULL,
        window_end timestamptz NOT NULL,
        state text NOT NULL DEFAULT 'running',
        planned_batches integer NOT NULL DEFAULT 0,
        watermark_batches integer NOT NULL DEFAULT 0,
        watermark_time timestamptz,
        peak_backlog_chunks integer NOT NULL DEFAULT 0,
        peak_backlog_bytes bigint NOT NULL DEFAULT 0,
        last_batch_end_at timestamptz,
        started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at timestamptz,
        report jsonb)""",
    # Every compress_chunk Tidemark ran: the report and the tests read it to
    # prove compression happened progressively, not at the end.
    """CREATE TABLE IF NOT EXISTS tidemark.compression_log (
        id bigserial PRIMARY KEY,
        run_id text,
        dataset text NOT NULL,
        hypertable text NOT NULL,
        chunk text NOT NULL,
        range_start timestamptz NOT NULL,
        range_end timestamptz NOT NULL,
        phase text NOT NULL,
        bytes_before bigint,
        bytes_after bigint,
        seconds double precision NOT NULL,
        compressed_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    # Compression policy jobs Tidemark switched off for a load, to switch back on.
    """CREATE TABLE IF NOT EXISTS tidemark.paused_policies (
        job_id integer PRIMARY KEY,
        dataset text NOT NULL,
        hypertable text NOT NULL,
        paused_by text NOT NULL,
        paused_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
]


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
        for ddl in _BOOKKEEPING_DDL:
            conn.execute(ddl)


def ensure_schema(conn: psycopg.Connection, dataset: Dataset) -> None:
    ensure_bookkeeping(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for table in dataset.tables:
            _ensure_hypertable(conn, table)


def _ensure_hypertable(conn: psycopg.Connection, table: Hypertable) -> None:
    ident = table_ident(table)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name),
            sql.SQL(c.type),  # from the closed COLUMN_TYPES list, validated in Column
            sql.SQL("" if c.nullable else " NOT NULL"),
        )
        for c in table.columns
    )
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(ident, columns))
    regclass = regclass_text(conn, table)
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
        options: list[sql.Composable] = [sql.SQL("timescaledb.compress")]
        if table.segmentby:
            options.append(sql.SQL("timescaledb.compress_segmentby = {}").format(sql.Literal(_column_list(conn, table.segmentby))))
        if table.orderby:
            options.append(sql.SQL("timescaledb.compress_orderby = {}").format(sql.Literal(_column_list(conn, table.orderby))))
        conn.execute(sql.SQL("ALTER TABLE {} SET ({})").format(ident, sql.SQL(", ").join(options)))
    conn.execute(
        "SELECT add_compression_policy(%s::regclass, compress_after => %s::interval, if_not_exists => true)",
        (regclass, table.compress_after),
    )
