"""Tidemark's own bookkeeping tables, every one created here, idempotently, in the ``tidemark`` schema.

One place for the whole state layout: the batch ledger, live cursors, run
claims, hypertable owners, the compression log, the sensor's poke history,
paused policies and the catchup staging manifest. ``tidemark.timescale.schema.ensure_bookkeeping``
runs this under the schema lock before any run writes.
"""

from __future__ import annotations

import psycopg

__all__ = ["SCHEMA", "ensure"]

SCHEMA = "tidemark"

_DDL = [
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
    # A rerun under the same run id (a cleared run, `airflow backfill create --reprocess-behavior ...`) is a new
    # attempt: tidemark.runs holds the latest, runs_history every earlier one, its report included (state.runs.claim).
    """CREATE TABLE IF NOT EXISTS tidemark.runs_history (
        run_id text NOT NULL,
        attempt integer NOT NULL,
        dataset text NOT NULL,
        kind text NOT NULL,
        window_start timestamptz NOT NULL,
        window_end timestamptz NOT NULL,
        state text NOT NULL,
        planned_batches integer NOT NULL,
        watermark_batches integer NOT NULL,
        peak_backlog_chunks integer NOT NULL,
        peak_backlog_bytes bigint NOT NULL,
        started_at timestamptz NOT NULL,
        finished_at timestamptz,
        report jsonb,
        archived_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (run_id, attempt))""",
    "CREATE INDEX IF NOT EXISTS runs_history_started_at ON tidemark.runs_history (started_at)",
    # The first line of a batch task's error, per try (state.runs.record_failure): the run's tab shows it while the run
    # goes on. Never a row or a secret: one line, cut, URIs and passwords masked, connection errors by type only.
    """CREATE TABLE IF NOT EXISTS tidemark.batch_failures (
        run_id text NOT NULL,
        attempt integer NOT NULL,
        batch_index integer NOT NULL,
        try_number integer NOT NULL,
        error text NOT NULL,
        failed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (run_id, attempt, batch_index, try_number))""",
    # Which dataset may write each hypertable (tidemark.state.owners): claimed by the first run to plan it,
    # checked in every writing transaction, so two datasets declaring one table cannot delete each other's rows.
    """CREATE TABLE IF NOT EXISTS tidemark.hypertable_owners (
        schema_name text NOT NULL,
        table_name text NOT NULL,
        dataset text NOT NULL,
        claimed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        claimed_by_run text NOT NULL,
        PRIMARY KEY (schema_name, table_name))""",
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
    "CREATE INDEX IF NOT EXISTS compression_log_run_id ON tidemark.compression_log (run_id)",
    # One row per sensor poke (watermark, backlog, rows so far): the UI's backlog plot.
    # Bounded per run and pruned by tidemark.state.progress.record_poke; goes with the run's row.
    """CREATE TABLE IF NOT EXISTS tidemark.poke_history (
        run_id text NOT NULL REFERENCES tidemark.runs (run_id) ON DELETE CASCADE,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        watermark_batches integer NOT NULL,
        watermark_time timestamptz,
        backlog_chunks integer NOT NULL,
        backlog_bytes bigint NOT NULL,
        remaining_chunks integer NOT NULL,
        remaining_bytes bigint NOT NULL,
        rows_loaded bigint NOT NULL,
        PRIMARY KEY (run_id, at))""",
    # Compression policy jobs Tidemark switched off for a load, to switch back on.
    """CREATE TABLE IF NOT EXISTS tidemark.paused_policies (
        job_id integer PRIMARY KEY,
        dataset text NOT NULL,
        hypertable text NOT NULL,
        paused_by text NOT NULL,
        paused_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    # What each catchup batch staged (tidemark.flows.catchup): the publish checks staging against it.
    """CREATE TABLE IF NOT EXISTS tidemark.staging_manifest (
    staging text NOT NULL,
    batch_index integer NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    row_counts jsonb NOT NULL,
    staged_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (staging, batch_index))""",
]


# Columns added to tables of an earlier layout: (table, column, type). Added only where missing, so a plan does
# not take ALTER TABLE's exclusive lock on every run.
_COLUMNS = [
    # A rerun under the same run id is a new attempt (state.runs.claim).
    ("runs", "attempt", "integer NOT NULL DEFAULT 1"),
    # Bytes the window's chunks took at the observation, and whether a poke or a batch's commit made it.
    ("poke_history", "stored_bytes", "bigint"),
    ("poke_history", "source", "text NOT NULL DEFAULT 'poke'"),
]


def ensure(conn: psycopg.Connection) -> None:
    """Create what is missing (the caller holds the schema lock and the transaction)."""
    for ddl in _DDL:
        conn.execute(ddl)
    have = {(t, c) for t, c in conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'tidemark'").fetchall()}
    for table, column, kind in _COLUMNS:
        if (table, column) not in have:
            conn.execute(f"ALTER TABLE tidemark.{table} ADD COLUMN IF NOT EXISTS {column} {kind}")
