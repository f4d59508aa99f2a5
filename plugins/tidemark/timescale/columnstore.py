"""Direct-to-columnstore COPY: which datasets load straight into compressed chunks.

With ``timescaledb.enable_direct_compress_copy`` (TimescaleDB 2.21+, tech
preview in 2.23) a COPY writes compressed batches instead of heap rows, so a
chunk is compressed the moment its batch commits: no uncompressed backlog, no
compression pass behind the watermark. Measured on the embedded engine for the
demo's 1.15 M ``ledgers`` rows: 4.8 s of COPY against 5.3 s COPY + 2.5 s
``compress_chunk`` the classic way, same final size (63.9 vs 64.6 MB) and the
same time-range query time (bench/bench_speed.py).

TimescaleDB silently falls back to heap rows on a table with a primary key, a
unique index, user triggers or a continuous aggregate, so the mode is decided
per dataset at plan time (``resolve``) from the tables as they are, and the
backfill keeps its classic progressive compression (and backpressure) for any
table that cannot take it.

``TIDEMARK_DIRECT_COMPRESS`` = ``auto`` (default: on where every table allows
it), ``on`` (wherever a table allows it) or ``off`` overrides the dataset's
``direct_compress`` field (None = auto); the fault suite runs in both modes
with it.
"""

from __future__ import annotations

import dataclasses

import psycopg

from tidemark import config
from tidemark.connection import one
from tidemark.model.dataset import Dataset, Hypertable

GUC = "timescaledb.enable_direct_compress_copy"
ENV = "TIDEMARK_DIRECT_COMPRESS"  # read by tidemark.config; named here for the tests that set it

# TimescaleDB chunk status bits (_timescaledb_functions.chunk_status).
COMPRESSED = 1
UNORDERED = 2
PARTIAL = 8

# A chunk written directly by this many batches or more is recompressed once it lies behind the
# watermark: each batch leaves its own small, overlapping compressed batches. Measured (4 days of
# ledgers): 2 writes per chunk leave size and a time-range query as after recompression, while
# recompression costs twice a classic compress_chunk; 12 writes per chunk make an
# ORDER BY ... LIMIT query 5x slower until recompressed.
RECOMPRESS_MIN_WRITES = 4


def requested(dataset: Dataset) -> bool | None:
    """The mode asked for: True (on), False (off) or None (auto, the dataset's own choice), the setting winning."""
    mode = config.direct_compress()
    if mode == "auto":
        return dataset.direct_compress
    return mode == "on"


def server_supports(conn: psycopg.Connection) -> bool:
    return bool(one(conn.execute("SELECT count(*) FROM pg_settings WHERE name = %s", (GUC,)))[0])


def blockers(conn: psycopg.Connection, table: Hypertable) -> list[str]:
    """Why TimescaleDB would write this hypertable's COPY as heap rows (empty: it can go direct)."""
    found: list[str] = []
    rows = conn.execute(
        "SELECT i.indisprimary, i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (table.schema, table.name),
    ).fetchall()
    if any(p for p, _ in rows):
        found.append("primary key")
    elif any(u for _, u in rows):
        found.append("unique index")
    triggers = one(conn.execute(
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND NOT t.tgisinternal AND t.tgname <> 'ts_insert_blocker'",
        (table.schema, table.name),
    ))[0]
    if triggers:
        found.append("triggers")
    caggs = one(conn.execute(
        "SELECT count(*) FROM timescaledb_information.continuous_aggregates"
        " WHERE hypertable_schema = %s AND hypertable_name = %s",
        (table.schema, table.name),
    ))[0]
    if caggs:
        found.append("continuous aggregates")
    return found


def resolve(conn: psycopg.Connection, dataset: Dataset) -> list[str]:
    """Names of the dataset's tables the backfill writes directly into the columnstore (plan time)."""
    wanted = requested(dataset)
    if wanted is False or not server_supports(conn):
        return []
    direct = [t.name for t in dataset.tables if not blockers(conn, t)]
    if wanted is None and len(direct) < len(dataset.tables):
        return []  # auto: all or nothing, so one mode (and one story) per dataset
    return direct


def with_mode(dataset: Dataset, direct_tables: list[str] | tuple[str, ...]) -> Dataset:
    """The dataset as the loader should write it: ``direct_compress`` resolved to True or False."""
    return dataclasses.replace(dataset, direct_compress=bool(direct_tables))
