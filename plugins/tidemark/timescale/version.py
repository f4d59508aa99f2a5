"""The TimescaleDB server Tidemark talks to: its version and the features Tidemark adapts to, read once.

One query reads the extension's version and the direct-compress settings the
server offers; the answer is kept per server (host, port, database) for the
life of the process, so a run's plan and each of its batches ask once.
Features are named by what they let Tidemark do, each with the release that
brought it; where a setting can be seen (a GUC) it is detected, not inferred
from the version.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import psycopg

from tidemark.connection import one

DIRECT_COPY_GUC = "timescaledb.enable_direct_compress_copy"  # 2.21: COPY writes compressed batches
CLIENT_SORTED_GUC = "timescaledb.enable_direct_compress_copy_client_sorted"  # 2.21: trust the client's order
DIRECT_INSERT_GUC = "timescaledb.enable_direct_compress_insert"  # 2.23: INSERT too

# 2.24: a hypertable feeding continuous aggregates takes direct COPY (invalidations recorded at commit);
# before, TimescaleDB silently wrote such a table's COPY as heap rows.
DIRECT_WITH_CAGGS = (2, 24)
# 2.28.1: direct COPY enforces CHECK and NOT NULL constraints (timescaledb#10056); before, a compressed
# batch went in unchecked, so a table with CHECK constraints is loaded the classic way there (Tidemark
# checks NOT NULL itself before any write).
DIRECT_ENFORCES_CHECKS = (2, 28, 1)
# From 2.27 a direct COPY into a hypertable whose segmentby was never set may pick one itself at flush
# (timescaledb#9355, #9396, #9403): an unset segmentby then no longer means "none".
SEGMENTBY_DEFERRED = (2, 27)
# 2.29: a hypertable can opt into direct compress itself (``tsdb.direct_compress``, hypertable status
# bit 8): its COPY then goes direct whatever the session's GUC says, with compaction and compression
# policies of its own (timescaledb#10240).
TABLE_DIRECT_COMPRESS = (2, 29)
TABLE_DIRECT_COMPRESS_STATUS = 8


@dataclass(frozen=True)
class Server:
    version: tuple[int, int, int]
    version_text: str
    settings: frozenset[str]  # the timescaledb.* settings the server knows
    functions: frozenset[str] = frozenset()  # the Timescale functions Tidemark may call that the server has

    @property
    def direct_copy(self) -> bool:
        return DIRECT_COPY_GUC in self.settings

    @property
    def client_sorted_copy(self) -> bool:
        return CLIENT_SORTED_GUC in self.settings

    @property
    def direct_insert(self) -> bool:
        return DIRECT_INSERT_GUC in self.settings

    @property
    def direct_with_caggs(self) -> bool:
        return self.version >= DIRECT_WITH_CAGGS

    @property
    def direct_enforces_checks(self) -> bool:
        return self.version >= DIRECT_ENFORCES_CHECKS

    @property
    def segmentby_deferred(self) -> bool:
        return self.version >= SEGMENTBY_DEFERRED

    @property
    def table_direct_compress(self) -> bool:
        return self.version >= TABLE_DIRECT_COMPRESS

    @property
    def compact_chunk(self) -> bool:
        """``compact_chunk()`` (2.29): merges an unordered chunk's overlapping batches without a full recompression."""
        return "compact_chunk" in self.functions

    def features(self) -> dict[str, bool]:
        """What this server offers, by name (logged by the plan, shown in tests)."""
        return {name: bool(getattr(self, name)) for name in (
            "direct_copy", "client_sorted_copy", "direct_insert", "direct_with_caggs", "direct_enforces_checks",
            "segmentby_deferred",
            "table_direct_compress", "compact_chunk")}

    def describe(self) -> str:
        offered = [name for name, on in self.features().items() if on]
        return f"TimescaleDB {self.version_text} ({', '.join(offered) or 'no direct compress'})"


def parse_version(text: str) -> tuple[int, int, int]:
    """``2.23.0-dev`` -> (2, 23, 0); missing parts are 0."""
    numbers = [int(n) for n in re.findall(r"\d+", text.split("-")[0])[:3]]
    while len(numbers) < 3:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2]


_cache: dict[tuple[str, str, str], Server] = {}
_lock = threading.Lock()


def server(conn: psycopg.Connection) -> Server:
    """The server behind ``conn`` (read at the first call for that server, then remembered)."""
    key = (conn.info.host, str(conn.info.port), conn.info.dbname)
    with _lock:
        known = _cache.get(key)
    if known is not None:
        return known
    found = read(conn)
    if found.version > (0, 0, 0):  # not before the extension exists: it is created by the first plan
        with _lock:
            _cache[key] = found
    return found


def read(conn: psycopg.Connection) -> Server:
    """Ask the server now (no cache)."""
    version_text, settings, functions = one(conn.execute(
        "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),"
        " (SELECT coalesce(array_agg(name::text), '{}') FROM pg_settings WHERE name LIKE 'timescaledb.%%'),"
        " (SELECT coalesce(array_agg(DISTINCT p.proname::text), '{}') FROM pg_proc p"
        "  JOIN pg_namespace n ON n.oid = p.pronamespace"
        "  WHERE n.nspname IN ('_timescaledb_functions', 'public') AND p.proname = ANY(%s))",
        (list(_FUNCTIONS),),
    ))
    text = str(version_text or "0")
    return Server(version=parse_version(text), version_text=text, settings=frozenset(settings),
                  functions=frozenset(functions))


_FUNCTIONS = ("compact_chunk",)


def forget() -> None:
    """Drop what is remembered (tests that change a server's features)."""
    with _lock:
        _cache.clear()
