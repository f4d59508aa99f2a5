"""Rows from any PostgreSQL-protocol database, read window by window through a server-side cursor.

Either a ``query`` with ``%(start)s`` and ``%(end)s`` placeholders (bound
by psycopg as parameters, never formatted into the text), or a source
``table`` whose columns are named like the hypertable's. Rows stream in
``fetch_size`` pieces from a named cursor, so a window of any size is never
in memory at once. Counting (for verification) and the tip (for live
ingestion) reuse the same query: ``count(*)`` over the window, and
``max(time)`` over an unbounded window, unless ``tip_query`` says better.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import sql

from tidemark.connection import one
from tidemark.model.dataset import check_identifier
from tidemark.errors import InvalidInput
from tidemark.sources import access
from tidemark.model.dataset import RowBatch

if TYPE_CHECKING:
    from tidemark.model.dataset import Hypertable

_cursor_names = itertools.count()


class SqlSource:
    def __init__(
        self,
        conn_id: str,
        query: str | None = None,
        *,
        table: str | None = None,
        schema: str = "public",
        tip_query: str | None = None,
        count: bool = True,
        fetch_size: int = 20_000,
    ) -> None:
        if not isinstance(conn_id, str) or not conn_id:
            raise InvalidInput("a sql source needs conn_id: the Airflow connection to read from")
        if query is not None and table is not None:
            raise InvalidInput("a sql source takes either query or table, not both")
        if query is not None:
            if not isinstance(query, str) or "%(start)s" not in query or "%(end)s" not in query:
                raise InvalidInput(
                    "a sql source's query must select only the window, with the placeholders %(start)s and "
                    "%(end)s (bound as parameters), e.g. ... WHERE t >= %(start)s AND t < %(end)s"
                )
        if table is not None:
            check_identifier(table, "sql source table")
        check_identifier(schema, "sql source schema")
        if isinstance(fetch_size, bool) or not isinstance(fetch_size, int) or fetch_size < 1:
            raise InvalidInput(f"fetch_size must be a positive integer, got {fetch_size!r}")
        self.conn_id = conn_id
        self.query = query
        self.table = table
        self.schema = schema
        self.tip_query = tip_query
        self.count = bool(count)
        self.fetch_size = fetch_size

    def _select(self, table: Hypertable, tables: Sequence[Hypertable]) -> sql.SQL | sql.Composed:
        if self.query is not None:
            if len(tables) != 1:
                raise InvalidInput("a sql source with a query feeds one table; give each table its own query")
            return sql.SQL(self.query)  # the dataset author's own query (psycopg wants literals; this is config)
        source = sql.Identifier(self.schema, self.table or table.name)
        t = sql.Identifier(table.time_column)
        return sql.SQL("SELECT {} FROM {} WHERE {} >= %(start)s AND {} < %(end)s").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names), source, t, t
        )

    def read(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> Iterator[tuple[str, Any, str]]:
        for table in tables:
            yield from self._read_one(table, tables, start, end)

    def _read_one(
        self, table: Hypertable, tables: Sequence[Hypertable], start: datetime, end: datetime
    ) -> Iterator[tuple[str, Any, str]]:
        origin = f"sql source via connection {self.conn_id!r}"
        with access.connection(self.conn_id)() as conn:
            with conn.transaction():
                with conn.cursor(name=f"tidemark_source_{next(_cursor_names)}") as cur:
                    cur.itersize = self.fetch_size
                    cur.execute(self._select(table, tables), {"start": start, "end": end})
                    names = tuple(d.name for d in cur.description or ())
                    while True:
                        rows = cur.fetchmany(self.fetch_size)
                        if not rows:
                            break
                        yield table.name, RowBatch(names, rows), origin

    def expected_counts(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> dict[str, int] | None:
        if not self.count:
            return None
        out = {}
        with access.connection(self.conn_id)() as conn:
            for table in tables:
                q = sql.SQL("SELECT count(*) FROM ({}) AS tidemark_window").format(self._select(table, tables))
                out[table.name] = int(one(conn.execute(q, {"start": start, "end": end}))[0])
        return out

    def tip(self, tables: Sequence[Hypertable]) -> datetime | None:
        with access.connection(self.conn_id)() as conn:
            if self.tip_query:
                row = conn.execute(sql.SQL(self.tip_query)).fetchone()  # the dataset author's own query
                return row[0] if row else None
            tips = []
            for table in tables:
                q = sql.SQL("SELECT max({}) FROM ({}) AS tidemark_all").format(
                    sql.Identifier(table.time_column), self._select(table, tables)
                )
                row = conn.execute(q, {"start": "-infinity", "end": "infinity"}).fetchone()
                if row and row[0] is not None:
                    tips.append(row[0])
        return min(tips) if tips else None

    def describe(self) -> str:
        what = "a query" if self.query else f"table {self.schema}.{self.table or '<hypertable name>'}"
        return f"sql source: {what} via connection {self.conn_id!r}"
