"""Rows from any PostgreSQL-protocol database, read window by window through a server-side cursor.

Either a ``query`` with ``%(start)s`` and ``%(end)s`` placeholders (bound
by psycopg as parameters, never formatted into the text), or a source
``table`` whose columns are named like the hypertable's. Rows stream in
``fetch_size`` pieces from a named cursor, so a window of any size is never
in memory at once. Counting (for verification) and the tip (for live
ingestion) reuse the same query: ``count(*)`` over the window, and
``max(time)`` over an unbounded window, unless ``tip_query`` says better.

A source only reads. Every statement it runs - the window's rows, a count,
the tip, the plan's check - runs in a ``READ ONLY`` transaction (a query
calling ``drop_chunks()`` or a function that inserts fails there) and as
exactly one statement: through a server-side cursor, whose ``DECLARE`` goes
over the extended query protocol, which the server refuses to split
(``DROP TABLE x; SELECT now()`` is refused whole) and which takes a query,
never a command. What the database refuses because of the query or its data
is ``SourceRefused``, bad input that no retry fixes; a lost connection stays
what it is, and is retried.

Before a run writes anything its plan calls ``check``: the query is
prepared and described on the source, so one that cannot be prepared (a
syntax error, two statements, a missing table), whose ``%(start)s`` and
``%(end)s`` are not both real parameters (placeholders left in a comment),
or which does not return the table's columns is refused once, naming the
table and the key to fix; then it runs read-only over an empty window, so a
query that writes as it starts is refused before the first batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors as pe
from psycopg import pq, sql
from psycopg._queries import PostgresQuery  # psycopg's own %(name)s -> $n conversion, the one execute() applies
from psycopg.adapt import Transformer
from psycopg.rows import tuple_row

from tidemark import retrying
from tidemark.errors import InvalidInput, SourceRefused
from tidemark.model.dataset import RowBatch, check_identifier
from tidemark.sources import access

if TYPE_CHECKING:
    from tidemark.model.dataset import Hypertable

_cursor_names = itertools.count()

# What the database says when the statement itself cannot run as written (class 42: syntax, a missing
# table or column, no privilege; 0A: not a query; 22: a value; 25006: it writes; 08P01: the parameters
# psycopg binds are not the ones the statement has). Anything else - a lost connection above all - is not
# the query's fault and keeps its own type.
_QUERY_FAULTS: tuple[type[psycopg.Error], ...] = (
    pe.ProgrammingError, pe.NotSupportedError, pe.DataError, pe.ReadOnlySqlTransaction, pe.ProtocolViolation,
)


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

    @property
    def _key(self) -> str:
        """The declaration key a refused read points at."""
        return "query" if self.query is not None else "table"

    @contextmanager
    def _read_only(self) -> Iterator[psycopg.Connection]:
        """A connection to the source, inside a READ ONLY transaction for as long as the block runs."""
        with access.connection(self.conn_id)() as conn:
            conn.read_only = True  # psycopg opens every transaction with BEGIN READ ONLY
            with conn.transaction():
                yield conn

    @contextmanager
    def _refusals(self, key: str, table: Hypertable | None) -> Iterator[None]:
        """The database's refusal of the statement itself as SourceRefused naming the table and ``key``."""
        try:
            yield
        except psycopg.Error as exc:
            if retrying.is_transient(exc) or not isinstance(exc, _QUERY_FAULTS):
                raise
            raise SourceRefused(self._refused(key, table, _first_line(exc), exc)) from None

    def _refused(self, key: str, table: Hypertable | None, detail: str, exc: BaseException | None = None) -> str:
        what = f"table {table.qualified}: " if table is not None else ""
        hint = ""
        if isinstance(exc, pe.ReadOnlySqlTransaction):
            hint = " (a source may only read: its statements run in a READ ONLY transaction)"
        elif isinstance(exc, pe.IndeterminateDatatype):
            hint = " (cast the placeholder, e.g. %(start)s::timestamptz)"
        return f"{what}the sql source's {key} (via connection {self.conn_id!r}) is refused: {detail}{hint}; fix the {key}"

    def read(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> Iterator[tuple[str, Any, str]]:
        for table in tables:
            yield from self._read_one(table, tables, start, end)

    def _read_one(
        self, table: Hypertable, tables: Sequence[Hypertable], start: datetime, end: datetime
    ) -> Iterator[tuple[str, Any, str]]:
        origin = f"sql source via connection {self.conn_id!r}"
        select = self._select(table, tables)
        with self._refusals(self._key, table), self._read_only() as conn, _cursor(conn) as cur:
            cur.itersize = self.fetch_size
            cur.execute(select, {"start": start, "end": end})
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
        for table in tables:
            q = sql.SQL("SELECT count(*) FROM ({}) AS tidemark_window").format(self._select(table, tables))
            out[table.name] = int(self._value(self._key, table, q, {"start": start, "end": end}))
        return out

    def tip(self, tables: Sequence[Hypertable]) -> datetime | None:
        if self.tip_query:
            tip: datetime | None = self._value("tip_query", None, sql.SQL(self.tip_query), None)  # the author's query
            return tip
        tips = []
        for table in tables:
            q = sql.SQL("SELECT max({}) FROM ({}) AS tidemark_all").format(
                sql.Identifier(table.time_column), self._select(table, tables)
            )
            value = self._value(self._key, table, q, {"start": "-infinity", "end": "infinity"})
            if value is not None:
                tips.append(value)
        return min(tips) if tips else None

    def _value(self, key: str, table: Hypertable | None, query: sql.SQL | sql.Composed, params: dict[str, Any] | None) -> Any:
        """The first column of the first row ``query`` returns (None without one), read-only, one statement."""
        with self._refusals(key, table), self._read_only() as conn, _cursor(conn) as cur:
            cur.execute(query, params)
            row = cur.fetchone()
        return row[0] if row else None

    def check(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> None:
        """Refuse, before a run writes anything, a query this source could never serve its tables with.

        Prepared and described on the source without parameter types (as the
        server sees the statement psycopg sends), inside a READ ONLY
        transaction: refused if it cannot be prepared, if it has not exactly
        the two parameters ``%(start)s`` and ``%(end)s`` become, or if it lacks
        one of the table's columns. Then run over the empty window
        ``[start, start)``: a query that writes as it starts is refused here.
        """
        for table in tables:
            select = self._select(table, tables)
            with self._refusals(self._key, table), self._read_only() as conn:
                converted = PostgresQuery(Transformer.from_context(conn))
                converted.convert(select, {"start": start, "end": end})
                params, columns = _describe(conn, f"tidemark_check_{next(_cursor_names)}", converted.query)
                if params != 2:
                    raise SourceRefused(self._refused(
                        self._key, table, f"it has {params} parameter(s) where %(start)s and %(end)s must make "
                        "exactly 2 (placeholders in a comment or a string are not parameters)"))
                missing = [c for c in table.column_names if c not in columns]
                if missing:
                    raise SourceRefused(self._refused(
                        self._key, table, f"it returns no column {', '.join(map(repr, missing))} (it returns "
                        f"{columns}; the table's columns are {list(table.column_names)})"))
                with _cursor(conn) as cur:
                    cur.execute(select, {"start": start, "end": start})
                    cur.fetchone()

    def describe(self) -> str:
        what = "a query" if self.query else f"table {self.schema}.{self.table or '<hypertable name>'}"
        return f"sql source: {what} via connection {self.conn_id!r}"


def _cursor(conn: psycopg.Connection) -> psycopg.ServerCursor[tuple[Any, ...]]:
    """A server-side cursor: one statement over the extended protocol, a query and never a command; tuple rows."""
    return psycopg.ServerCursor(conn, f"tidemark_source_{next(_cursor_names)}", row_factory=tuple_row)


def _describe(conn: psycopg.Connection, name: str, query: bytes) -> tuple[int, list[str]]:
    """(parameters, column names) of ``query`` as the server prepares it without parameter types; deallocated after."""
    encoding = conn.info.encoding
    prepared = conn.pgconn.prepare(name.encode(), query)
    if prepared.status != pq.ExecStatus.COMMAND_OK:
        raise pe.error_from_result(prepared, encoding=encoding)
    try:
        described = conn.pgconn.describe_prepared(name.encode())
        if described.status != pq.ExecStatus.COMMAND_OK:
            raise pe.error_from_result(described, encoding=encoding)
        return described.nparams, [(described.fname(i) or b"").decode(encoding) for i in range(described.nfields)]
    finally:
        # An aborted transaction refuses DEALLOCATE; only a broken connection fails a describe, and it ends the session.
        if conn.pgconn.transaction_status == pq.TransactionStatus.INTRANS:
            conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
