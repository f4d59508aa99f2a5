"""Direct-to-columnstore COPY: which datasets load straight into compressed chunks.

With ``timescaledb.enable_direct_compress_copy`` (TimescaleDB 2.21+, tech
preview in 2.23) a COPY writes compressed batches instead of heap rows, so a
chunk is compressed the moment its batch commits: no uncompressed backlog, no
compression pass behind the watermark. Measured on the embedded engine for the
demo's 1.15 M ``ledgers`` rows: 4.8 s of COPY against 5.3 s COPY + 2.5 s
``compress_chunk`` the classic way, same final size (63.9 vs 64.6 MB) and the
same time-range query time (bench/bench_speed.py).

TimescaleDB silently falls back to heap rows on a table with a primary key, a
unique index, an exclusion constraint, user triggers or (before 2.24) a
continuous aggregate, and before 2.28.1 it skips CHECK constraints, so the mode is decided per dataset at plan time
(``resolve``) from the tables and the server as they are
(``tidemark.timescale.version``), and the backfill keeps its classic
progressive compression (and backpressure) for any table that cannot take it.

``TIDEMARK_DIRECT_COMPRESS`` = ``auto`` (default: on where every table allows
it), ``on`` (wherever a table allows it) or ``off`` overrides the dataset's
``direct_compress`` field (None = auto); the fault suite runs in both modes
with it. A table that opts into direct compress itself (``tsdb.direct_compress``,
TimescaleDB 2.29+) is written directly by the server whatever the session
asks: ``auto`` and ``on`` then load the dataset directly, ``off`` leaves the
table to the server and its own policies; each decision is logged with its
reason (``decide``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import datetime, timezone

import psycopg

from tidemark import config
from tidemark.connection import one
from tidemark.model.dataset import Dataset, Hypertable
from tidemark.timescale import version
from tidemark.timescale.version import CLIENT_SORTED_GUC as CLIENT_SORTED_GUC  # set by the loader per COPY

log = logging.getLogger(__name__)

GUC = version.DIRECT_COPY_GUC
ENV = "TIDEMARK_DIRECT_COMPRESS"  # read by tidemark.config; named here for the tests that set it

# TimescaleDB chunk status bits (_timescaledb_functions.chunk_status).
COMPRESSED = 1
UNORDERED = 2
PARTIAL = 8

# A direct run recompresses, once it lies behind the watermark (and in the final pass), every chunk a
# direct COPY left flagged unordered: one written by several batches (each batch's rows are sorted only
# among themselves), or one whose rows could not be sent sorted (sorted_tables). Chunks written sorted
# are ordered already and left alone. An unordered chunk left behind would be recompressed by the
# table's compression policy as soon as the run restores it, racing whatever runs then (12 writes per
# chunk also made an ORDER BY ... LIMIT query 5x slower until recompressed). The plan's
# ``recompress_unordered`` is set where a chunk may take this many batch writes: every direct run.
RECOMPRESS_MIN_WRITES = 1


def requested(dataset: Dataset) -> bool | None:
    """The mode asked for: True (on), False (off) or None (auto, the dataset's own choice), the setting winning."""
    mode = config.direct_compress()
    if mode == "auto":
        return dataset.direct_compress
    return mode == "on"


def server_supports(conn: psycopg.Connection) -> bool:
    return version.server(conn).direct_copy


def blockers(conn: psycopg.Connection, table: Hypertable, server: version.Server | None = None) -> list[str]:
    """Why this hypertable's COPY cannot go direct (empty: it can).

    TimescaleDB writes heap rows instead for most of these; a table with CHECK constraints it would write
    compressed without checking them before 2.28.1, so Tidemark loads that one the classic way.
    """
    server = server or version.server(conn)
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
    exclusions, triggers, caggs, checks = one(conn.execute(
        "SELECT (SELECT count(*) FROM pg_constraint x WHERE x.conrelid = c.oid AND x.contype = 'x'),"
        " (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal"
        "  AND t.tgname NOT IN ('ts_insert_blocker', 'ts_cagg_invalidation_trigger')),"  # the caggs' own: below
        " (SELECT count(*) FROM timescaledb_information.continuous_aggregates a"
        "  WHERE a.hypertable_schema = n.nspname AND a.hypertable_name = c.relname),"
        " (SELECT count(*) FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c')"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s"
        " UNION ALL SELECT 0, 0, 0, 0 LIMIT 1",
        (table.schema, table.name),
    ))
    if exclusions:
        found.append("exclusion constraint")
    if triggers:
        found.append("triggers")
    if caggs and not server.direct_with_caggs:
        found.append(f"continuous aggregates (direct COPY takes them from TimescaleDB "
                     f"{'.'.join(map(str, version.DIRECT_WITH_CAGGS))})")
    if checks and not server.direct_enforces_checks:
        found.append(f"CHECK constraints (direct COPY enforces them from TimescaleDB "
                     f"{'.'.join(map(str, version.DIRECT_ENFORCES_CHECKS))})")
    return found


def opted_in(conn: psycopg.Connection, table: Hypertable, server: version.Server) -> bool:
    """Whether the table asks for direct compress itself (``tsdb.direct_compress``; False before 2.29)."""
    if not server.table_direct_compress:
        return False
    row = conn.execute(
        "SELECT status & %s <> 0 FROM _timescaledb_catalog.hypertable WHERE schema_name = %s AND table_name = %s",
        (version.TABLE_DIRECT_COMPRESS_STATUS, table.schema, table.name),
    ).fetchone()
    return bool(row and row[0])


@dataclasses.dataclass(frozen=True)
class TableMode:
    """How one table is loaded, and why."""

    table: str
    direct: bool
    reason: str


def decide(conn: psycopg.Connection, dataset: Dataset) -> list[TableMode]:
    """Each table's write mode with its reason, from the setting, the dataset, the tables and the server."""
    server = version.server(conn)
    wanted = requested(dataset)
    if not server.direct_copy:
        return [TableMode(t.name, False, f"{server.describe()} has no direct COPY (2.21+)") for t in dataset.tables]
    blocked = {t.name: blockers(conn, t, server) for t in dataset.tables}
    own = {t.name for t in dataset.tables if opted_in(conn, t, server)}
    setting = "TIDEMARK_DIRECT_COMPRESS / the dataset's direct_compress"
    modes: list[TableMode] = []
    for t in dataset.tables:
        if blocked[t.name]:
            modes.append(TableMode(t.name, False, "cannot take direct COPY: " + ", ".join(blocked[t.name])))
        elif wanted is False:
            modes.append(TableMode(t.name, False, (
                "off by setting, but the table's own tsdb.direct_compress makes the server write it directly anyway"
                " (left to its own compaction and compression policies)") if t.name in own else f"off by {setting}"))
        elif t.name in own:
            modes.append(TableMode(t.name, True, "the table's own tsdb.direct_compress"))
        elif wanted is None and any(blocked.values()) and not own:
            # auto: all or nothing, so one mode (and one story) per dataset
            modes.append(TableMode(t.name, False, "auto: another table of the dataset cannot take direct COPY"))
        else:
            modes.append(TableMode(t.name, True, (
                "a table of the dataset opts into direct compress itself: the session's COPYs go direct"
                if own else "on" if wanted else "auto: every table of the dataset can take it")))
    return modes


def resolve(conn: psycopg.Connection, dataset: Dataset) -> list[str]:
    """Names of the dataset's tables the backfill writes directly into the columnstore (plan time); logs why."""
    modes = decide(conn, dataset)
    log.info("dataset %s on %s: %s", dataset.name, version.server(conn).describe(), "; ".join(
        f"{m.table} {'direct' if m.direct else 'classic'} ({m.reason})" for m in modes))
    return [m.table for m in modes if m.direct]


def with_mode(dataset: Dataset, direct_tables: list[str] | tuple[str, ...]) -> Dataset:
    """The dataset as the loader should write it: ``direct_compress`` resolved to True or False."""
    return dataclasses.replace(dataset, direct_compress=bool(direct_tables))


# -- ordered chunks from direct COPY -------------------------------------------------------------
#
# With ``timescaledb.enable_direct_compress_copy_client_sorted`` TimescaleDB trusts the COPY's row
# order: it neither sorts nor flags the chunk unordered, so the chunk comes out as ordered as a
# classic compress_chunk leaves it (status 1, no recompression). The server never checks: rows out
# of order would make ordered scans (ORDER BY time DESC LIMIT n) return wrong rows. Tidemark sets
# it only for a table whose rows it sorted itself, by the order the server keeps (sorted_tables),
# and only for a batch that is the only writer of every chunk it writes.


@dataclasses.dataclass(frozen=True)
class SortKey:
    column: str
    descending: bool
    nulls_first: bool


@dataclasses.dataclass(frozen=True)
class ChunkOrder:
    """The order inside a compressed chunk: rows grouped by ``segmentby``, each group sorted by ``orderby``."""

    segmentby: tuple[str, ...]
    orderby: tuple[SortKey, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.segmentby + tuple(k.column for k in self.orderby)


# Orderby column types whose order Arrow's sort kernels reproduce exactly (integers, booleans, dates,
# timestamps; floats unless a NaN is present, checked when sorting). Text orders by collation in
# PostgreSQL and by bytes in Arrow: never promised. Segmentby columns only need equal values kept
# together, which text, varchar and uuid (deterministic collations) do too.
ORDERABLE = frozenset({"smallint", "integer", "bigint", "real", "double precision", "boolean", "date",
                       "timestamp without time zone", "timestamp with time zone"})
SEGMENTABLE = ORDERABLE | {"text", "character varying", "uuid"}


# What the chunk order and the chunk bounds are read from, every table of a batch in one statement (one
# round trip per batch, not two per table: 66 ms a batch on the embedded engine for the demo's 3 tables).
_FACTS = """
SELECT t.name, s.segmentby, s.orderby, s.orderby_desc, s.orderby_nullsfirst,
       d.column_type::regtype::text, d.interval_length, d.partitioning_func IS NULL,
       (SELECT count(*) FROM _timescaledb_catalog.dimension o WHERE o.hypertable_id = h.id AND o.interval_length IS NOT NULL),
       (SELECT count(*) FROM timescaledb_information.chunks c WHERE c.hypertable_schema = h.schema_name
         AND c.hypertable_name = h.table_name AND c.range_end > %(start)s AND c.range_start < %(end)s
         AND (c.range_start < %(start)s OR c.range_end > %(end)s)),
       s.relid IS NOT NULL
FROM unnest(%(schemas)s::text[], %(names)s::text[], %(times)s::text[]) AS t(schema_name, name, time_column)
LEFT JOIN _timescaledb_catalog.hypertable h ON h.schema_name = t.schema_name AND h.table_name = t.name
LEFT JOIN _timescaledb_catalog.dimension d ON d.hypertable_id = h.id AND d.column_name = t.time_column
LEFT JOIN _timescaledb_catalog.compression_settings s
       ON s.relid = to_regclass(format('%%I.%%I', t.schema_name, t.name))
"""


@dataclasses.dataclass(frozen=True)
class _Facts:
    """One table's compression order (None where it has no compression settings) and time dimension."""

    segmentby: list[str] | None
    orderby: list[str] | None
    orderby_desc: list[bool]
    orderby_nullsfirst: list[bool]
    has_settings: bool
    time_type: str | None
    interval: int | None
    plain: bool  # no partitioning function on the time dimension
    open_dimensions: int
    straddling: int  # existing chunks reaching out of the window


def _facts(conn: psycopg.Connection, tables: Sequence[Hypertable], start: datetime, end: datetime) -> dict[str, _Facts]:
    rows = conn.execute(_FACTS, {
        "schemas": [t.schema for t in tables], "names": [t.name for t in tables],
        "times": [t.time_column for t in tables], "start": start, "end": end,
    }).fetchall()
    return {r[0]: _Facts(r[1], r[2], list(r[3] or []), list(r[4] or []), bool(r[10]), r[5], r[6], bool(r[7]),
                         int(r[8] or 0), int(r[9] or 0)) for r in rows}


def _order_of(facts: _Facts, table: Hypertable, server: version.Server) -> ChunkOrder | None:
    if not facts.has_settings or facts.orderby is None:
        return None
    segmentby = facts.segmentby
    if segmentby is None:
        if server.segmentby_deferred:
            return None
        segmentby = []
    kinds = {c.name: c.parsed for c in table.cols}

    def fits(name: str, allowed: frozenset[str]) -> bool:
        kind = kinds.get(name)
        return kind is not None and not kind.array and kind.base in allowed

    if not all(fits(c, SEGMENTABLE) for c in segmentby) or not all(fits(c, ORDERABLE) for c in facts.orderby):
        return None
    return ChunkOrder(tuple(segmentby), tuple(
        SortKey(c, bool(d), bool(n)) for c, d, n in zip(facts.orderby, facts.orderby_desc, facts.orderby_nullsfirst)))


def _whole(facts: _Facts, start: datetime, end: datetime) -> bool:
    if (facts.time_type != "timestamp with time zone" or not facts.interval or not facts.plain
            or facts.open_dimensions != 1 or facts.straddling):
        return False
    return all(((t - _EPOCH) // _MICROSECOND) % facts.interval == 0 for t in (start, end))


def chunk_order(conn: psycopg.Connection, table: Hypertable, server: version.Server) -> ChunkOrder | None:
    """The order the server keeps in the table's new compressed chunks; None if it is not fixed or not sortable here.

    Read from the table's compression settings, not from the declaration (a
    table may predate it). An orderby left unset is the server's to choose
    per chunk (its default is the time column DESC, or one derived from
    indexes), so nothing is promised for it; ``ensure_schema`` sets both
    explicitly on the tables it creates.
    """
    now = datetime.now(timezone.utc)
    facts = _facts(conn, [table], now, now).get(table.name)
    return None if facts is None else _order_of(facts, table, server)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # TimescaleDB aligns time slots to the Unix epoch
_MICROSECOND = datetime.resolution


def whole_chunks(conn: psycopg.Connection, table: Hypertable, start: datetime, end: datetime) -> bool:
    """Whether every chunk of the table that rows in [start, end) can land in lies inside [start, end).

    Then a batch over the window is the only writer of its chunks (its DELETE
    empties them first). A new chunk covers the slot of the time dimension's
    interval, counted from the Unix epoch, that its first row falls in; an
    existing chunk may differ (made under another interval), so those
    intersecting the window are read. A timestamptz time dimension without
    a partitioning function only.
    """
    facts = _facts(conn, [table], start, end).get(table.name)
    return facts is not None and _whole(facts, start, end)


def sorted_tables(conn: psycopg.Connection, dataset: Dataset, start: datetime, end: datetime) -> dict[str, ChunkOrder]:
    """Tables whose rows for [start, end) go as one sorted direct COPY, each with the order to sort them in.

    Empty unless the dataset loads by direct COPY and the server offers
    client-sorted COPY. A table is left out (written unordered, folded by
    recompression) where its order is not fixed or not sortable here, or
    where the window does not cover every chunk it writes.
    """
    if not dataset.direct_compress:
        return {}
    server = version.server(conn)
    if not (server.direct_copy and server.client_sorted_copy):
        return {}
    facts = _facts(conn, dataset.tables, start, end)
    out: dict[str, ChunkOrder] = {}
    for table in dataset.tables:
        known = facts.get(table.name)
        order = None if known is None or not _whole(known, start, end) else _order_of(known, table, server)
        if order is not None:
            out[table.name] = order
    return out
