"""Every source kind against real components: a real PostgreSQL 15 source, real files, the real engine."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from tests.conftest import PostgresServer
from tidemark.state import ledger
from tidemark.connection import connect, factory
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.errors import BadRow
from tidemark.errors import InvalidInput, SourceRefused
from tidemark.load.loader import ValueRefused, load_batch, staged_window
from tidemark.model.batch import Batch
from tidemark.timescale.schema import ensure_schema, resolve, table_ident
from tidemark.sources import FilesSource, PythonSource, SqlSource
from tidemark.sources.base import check_before_load
from tidemark.flows.verify import source_counts

UTC = timezone.utc
T0 = datetime(2024, 3, 1, tzinfo=UTC)

ALL_TYPES = (
    Column("t", "timestamptz"),
    Column("i2", "smallint", True),
    Column("i4", "integer", True),
    Column("i8", "bigint", True),
    Column("f4", "real", True),
    Column("f8", "double precision", True),
    Column("num", "numeric(12,3)", True),
    Column("txt", "text", True),
    Column("vc", "varchar(8)", True),
    Column("flag", "boolean", True),
    Column("day", "date", True),
    Column("local", "timestamp", True),
    Column("at", "timestamptz", True),
    Column("span", "interval", True),
    Column("id", "uuid", True),
    Column("doc", "json", True),
    Column("docb", "jsonb", True),
    Column("raw", "bytea", True),
    Column("tags", "text[]", True),
    Column("nums", "integer[]", True),
)


def typed_row(k: int) -> dict[str, Any]:
    """One row using every type, with awkward values (escapes, NULL elements, negatives)."""
    return {
        "t": T0 + timedelta(minutes=k),
        "i2": -k, "i4": 100_000 + k, "i8": 2**40 + k, "f4": 0.5 * k, "f8": k / 3,
        "num": Decimal(f"{k}.125"), "txt": f"line\t{k}\\n\n\"q\"", "vc": f"v{k}",
        "flag": k % 2 == 0, "day": date(2024, 1, 1) + timedelta(days=k),
        "local": datetime(2024, 1, 1, 12, 0) + timedelta(seconds=k),
        "at": datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=k),
        "span": timedelta(days=-1, seconds=k, microseconds=5), "id": uuid.UUID(int=k + 1),
        "doc": {"k": k, "s": "a\tb"}, "docb": [k, None, "x"], "raw": bytes([0, 92, k % 256, 10]),
        "tags": ["a,b", None, 'q"uote', "back\\slash"], "nums": [k, None, -k],
    }


def null_row(k: int) -> dict[str, Any]:
    return {c.name: (T0 + timedelta(minutes=k) if c.name == "t" else None) for c in ALL_TYPES}


def read_back(conn: psycopg.Connection, table: Hypertable) -> list[tuple[Any, ...]]:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    return conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY 1").format(cols, table_ident(table))).fetchall()


def as_tuple(row: dict[str, Any], table: Hypertable) -> tuple[Any, ...]:
    return tuple(row[c.name] for c in table.cols)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- every type, both encodings


BINARY_COPYABLE = ("t", "i2", "i4", "i8", "f4", "f8", "txt", "vc", "flag", "day", "local", "at", "span", "id")
ROWS_AS_BINARY = ("t", "i2", "i4", "i8", "f8", "txt", "vc", "flag", "day", "local", "at")
# Arrow: numeric and JSON text take CSV; raw uuids and durations binary COPY; with both, and with bytea/arrays,
# rows. Rows: binary COPY when every column is a number, boolean, date, timestamp or text; else COPY text.
FORMATS = {"rows": {"text"}, "rows_binary": {"binary"}, "arrow": {"csv"}, "arrow_with_lists_and_bytes": {"text"},
           "arrow_binary": {"binary"}, "arrow_mixed": {"text"}}


@pytest.mark.parametrize("path", ["rows", "rows_binary", "arrow", "arrow_with_lists_and_bytes", "arrow_binary",
                                  "arrow_mixed"])
def test_every_column_type_round_trips(dsn: str, conn: psycopg.Connection, path: str) -> None:
    """Rows take the text encoder; Arrow binary COPY where every column allows it, else the CSV writer,
    except pieces with bytea/array columns (row path)."""
    columns = {"arrow": tuple(c for c in ALL_TYPES if c.name not in ("raw", "tags", "nums", "span", "id")),
               "arrow_binary": tuple(c for c in ALL_TYPES if c.name in BINARY_COPYABLE),
               "arrow_mixed": tuple(c for c in ALL_TYPES if c.name not in ("raw", "tags", "nums")),
               "rows_binary": tuple(c for c in ALL_TYPES if c.name in ROWS_AS_BINARY)}.get(path, ALL_TYPES)
    table = Hypertable("typed", "t", columns, timedelta(days=1), schema=unique("types"))
    rows = [typed_row(k) for k in range(40)] + [null_row(40)]

    def arrow_piece(part: list[dict[str, Any]]) -> pa.Table:
        as_text = [{k: json.dumps(v) if k in ("doc", "docb") and v is not None else v for k, v in r.items()
                    if k in table.column_names} for r in part]
        return pa.Table.from_pylist(as_text)

    def fetch(start: datetime, end: datetime) -> Any:
        if path.startswith("rows"):
            return iter([{k: v for k, v in r.items() if k in table.column_names} for r in rows])
        return arrow_piece(rows[:20]).to_batches() + [arrow_piece(rows[20:])]

    ds = Dataset(unique("typed"), (table,), source=PythonSource(fetch))
    ensure_schema(conn, ds)
    with staged_window(resolve(conn, ds), Batch(0, T0, T0 + timedelta(days=1))) as staged:
        assert set(staged["typed"].parts) == FORMATS[path]
    result = load_batch(factory(dsn), ds, Batch(0, T0, T0 + timedelta(days=1)), "types")
    assert result.rows == {"typed": len(rows)}
    got = read_back(conn, table)
    assert got == [as_tuple(r, table) for r in rows]


def test_arrow_timestamps_keep_every_microsecond_across_the_calendar(dsn: str, conn: psycopg.Connection) -> None:
    """Arrow timestamps are rendered to text by numpy (tidemark.load.copy_csv.timestamp_text), not Arrow's writer.

    Leap days, the last microsecond of a day, years below 1000 and instants
    before 1970 are where a hand-rolled calendar goes wrong; a sliced array with
    nulls is where its validity bitmap does.
    """
    edge = [datetime(1, 1, 1, tzinfo=UTC), datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            datetime(1900, 2, 28, 12, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
            datetime(2000, 2, 29, tzinfo=UTC), datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)]
    table = Hypertable("cal", "t", (Column("t", "timestamptz"), Column("at", "timestamptz", True),
                                    Column("local", "timestamp", True)), timedelta(days=1), schema=unique("cal"))
    n = 400
    rows = [{"t": T0 + timedelta(seconds=k), "at": None if k % 9 == 0 else edge[k % len(edge)]
             + timedelta(microseconds=37 * k if edge[k % len(edge)].year < 9999 else 0),
             "local": None if k % 7 == 0 else (edge[k % len(edge)] - timedelta(days=k)).replace(tzinfo=None)}
            for k in range(n)]
    whole = pa.Table.from_pylist(rows, schema=pa.schema([("t", pa.timestamp("us", "UTC")),
                                                         ("at", pa.timestamp("us", "UTC")),
                                                         ("local", pa.timestamp("us"))]))
    pieces = [whole.slice(0, 3), whole.slice(3, 200).combine_chunks(), whole.slice(203)]  # offsets into one buffer
    ds = Dataset(unique("cal"), (table,), source=PythonSource(lambda s, e: pieces))
    ensure_schema(conn, ds)
    load_batch(factory(dsn), ds, Batch(0, T0, T0 + timedelta(days=1)), "cal")
    assert read_back(conn, table) == [as_tuple(r, table) for r in rows]


def test_pandas_nan_is_null_and_columns_match_by_name(dsn: str, conn: psycopg.Connection) -> None:
    import pandas as pd

    table = Hypertable("readings", "t", (Column("t", "timestamptz"), Column("v", "double precision", True),
                                         Column("sensor", "text")), timedelta(days=1), schema=unique("pandas"))
    frame = pd.DataFrame({
        "sensor": ["a", "b", "c"],  # another order than the table's, plus a column the table lacks
        "t": pd.date_range(T0, periods=3, freq="h", tz="UTC"),
        "v": [1.5, float("nan"), 3.0],
        "unused": [1, 2, 3],
    })
    ds = Dataset(unique("pandas"), (table,), source=PythonSource(lambda s, e: frame))
    ensure_schema(conn, ds)
    load_batch(factory(dsn), ds, Batch(0, T0, T0 + timedelta(days=1)), "pd")
    assert read_back(conn, table) == [(T0, 1.5, "a"), (T0 + timedelta(hours=1), None, "b"),
                                      (T0 + timedelta(hours=2), 3.0, "c")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"t": T0, "n": "abc"}, "column 'n'"),  # a str in an integer column (row path)
        (pa.table({"t": pa.array([T0], pa.timestamp("us", "UTC")), "n": ["abc"], "vc": ["x"]}), "'abc'"),  # Arrow cast
        ({"t": T0, "n": 1, "vc": "far too long"}, "too long"),  # the server's check, named
        ({"t": T0, "n": 2**40}, "out of range"),  # beyond int32: binary COPY falls back to text, the server refuses
        (pa.table({"t": pa.array([T0], pa.timestamp("us", "UTC")), "n": pa.array([1], pa.int64()),
                   "vc": ["far too long"]}), "too long"),  # the server's check on binary COPY
        ({"t": T0}, "has no column 'n'"),
    ],
)
def test_a_value_a_column_cannot_take_fails_the_batch_naming_it(
    dsn: str, conn: psycopg.Connection, value: Any, message: str
) -> None:
    table = Hypertable("strict", "t", (Column("t", "timestamptz"), Column("n", "integer"),
                                       Column("vc", "varchar(4)", True)), timedelta(days=1), schema=unique("strict"))
    data = value if isinstance(value, pa.Table) else [{"vc": None, **value}] if "n" in value else [value]
    ds = Dataset(unique("strict"), (table,), source=PythonSource(lambda s, e: data))
    ensure_schema(conn, ds)
    with pytest.raises((BadRow, ValueRefused, InvalidInput), match=message) as caught:
        load_batch(factory(dsn), ds, Batch(0, T0, T0 + timedelta(days=1)), "bad")
    text = str(caught.value)
    assert ds.name in text and table.qualified in text and T0.isoformat() in text
    assert read_back(conn, table) == [] and ledger.entries(conn, ds.name, T0, T0 + timedelta(days=1)) == []


def test_a_dataset_level_python_source_feeds_several_tables_with_one_call_per_window(
    dsn: str, conn: psycopg.Connection
) -> None:
    calls: list[tuple[datetime, datetime]] = []

    def fetch(start: datetime, end: datetime) -> dict[str, Any]:
        calls.append((start, end))
        minutes = int((end - start) / timedelta(minutes=1))
        return {
            "events": ({"t": start + timedelta(minutes=k), "n": k} for k in range(minutes)),
            "totals": [(start, minutes)],
        }

    schema = unique("multi")
    events = Hypertable("events", "t", (Column("t", "timestamptz"), Column("n", "integer")), timedelta(hours=6),
                        schema=schema)
    totals = Hypertable("totals", "t", (Column("t", "timestamptz"), Column("n", "integer")), timedelta(hours=6),
                        schema=schema)
    ds = Dataset(unique("multi"), (events, totals), source=PythonSource(fetch, count=lambda s, e: {
        "events": int((e - s) / timedelta(minutes=1)), "totals": 1}))
    ensure_schema(conn, ds)
    for i in range(3):
        load_batch(factory(dsn), ds, Batch(i, T0 + i * timedelta(hours=1), T0 + (i + 1) * timedelta(hours=1)), "m")
    assert len(calls) == 3
    assert source_counts(ds, T0, T0 + timedelta(hours=1)) == {"events": 60, "totals": 1}
    assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table_ident(events))).fetchone()[0] == 180
    assert conn.execute(sql.SQL("SELECT sum(n) FROM {}").format(table_ident(totals))).fetchone()[0] == 180


# --------------------------------------------------------------------------- sql: a real PostgreSQL 15 source


@pytest.fixture
def sql_source_table(source_pg: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A table of every type in the source server, and an Airflow connection id naming the server."""
    name = unique("src")
    conn_id = unique("pg_source")
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", source_pg.dsn)
    with connect(source_pg.dsn) as c:
        cols = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(col.name), sql.SQL(col.type))
                                  for col in ALL_TYPES)
        c.execute(sql.SQL("CREATE TABLE {} ({}, extra text)").format(sql.Identifier(name), cols))
        names = [col.name for col in ALL_TYPES]
        with c.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, names)))) as cp:
            for k in range(0, 3 * 60, 2):  # every 2 minutes for 3 hours, one row of NULLs
                row = typed_row(k) if k != 30 else null_row(k)
                cp.write_row([json.dumps(row[n]) if n in ("doc", "docb") and row[n] is not None else row[n]
                              for n in names])
    yield name, conn_id
    with connect(source_pg.dsn) as c:
        c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def source_rows(source_pg: PostgresServer, table: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    with connect(source_pg.dsn) as c:
        cols = sql.SQL(", ").join(sql.Identifier(n) for n in columns)
        return c.execute(sql.SQL("SELECT {} FROM {} ORDER BY 1").format(cols, sql.Identifier(table))).fetchall()


def test_sql_source_loads_exactly_the_source_rows_counts_and_knows_its_tip(
    dsn: str, conn: psycopg.Connection, source_pg: PostgresServer, sql_source_table: tuple[str, str]
) -> None:
    name, conn_id = sql_source_table
    query = f'SELECT * FROM "{name}" WHERE t >= %(start)s AND t < %(end)s'  # extra column: ignored
    table = Hypertable("from_sql", "t", ALL_TYPES, timedelta(hours=1), schema=unique("sql"),
                       source=SqlSource(conn_id, query, fetch_size=7))  # several fetches per window
    ds = Dataset(unique("sqlds"), (table,))
    ensure_schema(conn, ds)
    for i in range(3):
        load_batch(factory(dsn), ds, Batch(i, T0 + i * timedelta(hours=1), T0 + (i + 1) * timedelta(hours=1)), "s")
    assert read_back(conn, table) == source_rows(source_pg, name, table.column_names)
    assert source_counts(ds, T0, T0 + timedelta(hours=1)) == {"from_sql": 30}
    assert table.source is not None and table.source.tip((table,)) == T0 + timedelta(minutes=178)  # type: ignore[attr-defined]


def test_sql_source_by_table_name_and_missing_columns_fail_before_any_write(
    dsn: str, conn: psycopg.Connection, source_pg: PostgresServer, sql_source_table: tuple[str, str]
) -> None:
    name, conn_id = sql_source_table
    good = Hypertable("copy", "t", ALL_TYPES[:4], timedelta(hours=1), schema=unique("sqlt"),
                      source=SqlSource(conn_id, table=name))
    ds = Dataset(unique("sqlt"), (good,))
    ensure_schema(conn, ds)
    load_batch(factory(dsn), ds, Batch(0, T0, T0 + timedelta(hours=3)), "t")
    assert read_back(conn, good) == source_rows(source_pg, name, good.column_names)

    lacking = Hypertable("lacking", "t", (*ALL_TYPES[:2], Column("nope", "text", True)), timedelta(hours=1),
                         schema=good.schema, source=SqlSource(conn_id, f'SELECT t, i2 FROM "{name}" WHERE t >= '
                                                                       "%(start)s AND t < %(end)s"))
    bad = Dataset(unique("sqlbad"), (lacking,))
    ensure_schema(conn, bad)
    with pytest.raises(BadRow, match="has no column 'nope'"):
        load_batch(factory(dsn), bad, Batch(0, T0, T0 + timedelta(hours=1)), "t")
    assert read_back(conn, lacking) == []


def test_sql_source_refuses_a_query_without_window_placeholders() -> None:
    with pytest.raises(InvalidInput, match=r"%\(start\)s"):
        SqlSource("x", "SELECT * FROM readings")


def test_an_unreachable_source_fails_the_batch_and_writes_nothing(
    dsn: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidemark.connection import DatabaseUnreachable

    monkeypatch.setenv("AIRFLOW_CONN_GONE", "postgresql://u:hunter2-secret@127.0.0.1:1/db")
    table = Hypertable("gone", "t", ALL_TYPES[:2], timedelta(hours=1), schema=unique("gone"),
                       source=SqlSource("gone", "SELECT * FROM x WHERE t >= %(start)s AND t < %(end)s"))
    ds = Dataset(unique("gone"), (table,))
    ensure_schema(conn, ds)
    with pytest.raises(DatabaseUnreachable) as caught:
        load_batch(factory(dsn), ds, Batch(0, T0, T0 + timedelta(hours=1)), "g", attempts=1)
    assert "hunter2-secret" not in str(caught.value) and "gone" in str(caught.value)
    assert read_back(conn, table) == []


# --------------------------------------------------------------------------- sql: sources that only read


@pytest.fixture(params=["embedded", "postgres15"])
def guarded(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str]]:
    """(dsn, conn_id, schema) on each server a sql source may read: the embedded engine (also Tidemark's target,
    with TimescaleDB) and a real PostgreSQL 15. The schema holds ``src`` (100 rows a minute apart from T0),
    ``log`` (empty), ``victim`` (3 rows) and ``w()``, a function that writes a row to ``log``."""
    dsn = request.getfixturevalue("dsn") if request.param == "embedded" else request.getfixturevalue("source_pg").dsn
    schema, conn_id = unique("guard"), unique("guard_conn")
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", dsn.split("?")[0])
    s = sql.Identifier(schema)
    with connect(dsn) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        c.execute(sql.SQL("CREATE TABLE {}.src (t timestamptz NOT NULL, v integer)").format(s))
        c.execute(sql.SQL("INSERT INTO {}.src SELECT %s::timestamptz + g * interval '1 minute', g"
                          " FROM generate_series(0, 99) g").format(s), (T0,))
        c.execute(sql.SQL("CREATE TABLE {}.log (x integer)").format(s))
        c.execute(sql.SQL("CREATE TABLE {}.victim AS SELECT g FROM generate_series(1, 3) g").format(s))
        c.execute(sql.SQL("CREATE FUNCTION {}.w() RETURNS integer LANGUAGE sql AS {}").format(
            s, sql.Literal(f'INSERT INTO "{schema}".log VALUES (1) RETURNING 1')))
    yield dsn, conn_id, schema
    with connect(dsn) as c:
        c.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))


def guarded_table(schema: str, source: SqlSource) -> Hypertable:
    return Hypertable("src", "t", (Column("t", "timestamptz"), Column("v", "integer", True)), timedelta(hours=1),
                      schema=schema, source=source)


def untouched(dsn: str, schema: str) -> tuple[int, int]:
    """(rows written to log, rows left in victim): (0, 3) while nothing was written."""
    with connect(dsn) as c:
        s = sql.Identifier(schema)
        return (c.execute(sql.SQL("SELECT count(*) FROM {}.log").format(s)).fetchone()[0],
                c.execute(sql.SQL("SELECT count(*) FROM {}.victim").format(s)).fetchone()[0])


WINDOW = "t >= %(start)s AND t < %(end)s"
HOUR = (T0, T0 + timedelta(hours=1))


def test_every_statement_a_sql_source_runs_is_read_only(guarded: tuple[str, str, str]) -> None:
    """Reading, counting, the tip and the plan's check all run in a READ ONLY transaction: what writes is refused."""
    dsn, conn_id, schema = guarded
    ro = "current_setting('transaction_read_only') = 'on'"  # true only inside a READ ONLY transaction
    s = SqlSource(conn_id, f'SELECT t, v FROM "{schema}".src WHERE {WINDOW} AND {ro}',
                  tip_query=f'SELECT max(t) FROM "{schema}".src WHERE {ro}')
    table = guarded_table(schema, s)
    assert sum(len(piece[1].rows) for piece in s.read((table,), *HOUR)) == 60
    assert s.expected_counts((table,), *HOUR) == {"src": 60}
    assert s.tip((table,)) == T0 + timedelta(minutes=99)
    s.check((table,), *HOUR)

    writes = f'"{schema}".w() > 0'
    w = SqlSource(conn_id, f'SELECT t, v FROM "{schema}".src WHERE {WINDOW} AND (SELECT {writes})',
                  tip_query=f'SELECT max(t) FROM "{schema}".src WHERE {writes}')
    table = guarded_table(schema, w)
    for call in (lambda: list(w.read((table,), *HOUR)), lambda: w.expected_counts((table,), *HOUR),
                 lambda: w.tip((table,)), lambda: w.check((table,), *HOUR)):
        with pytest.raises(SourceRefused, match="read-only transaction"):
            call()
    assert untouched(dsn, schema) == (0, 3)


def test_the_server_refuses_several_statements_in_a_query_or_a_tip_query(guarded: tuple[str, str, str]) -> None:
    dsn, conn_id, schema = guarded
    s = SqlSource(conn_id, f'SELECT t, v FROM "{schema}".src WHERE {WINDOW}; DELETE FROM "{schema}".victim',
                  tip_query=f'DROP TABLE "{schema}".victim; SELECT now()')
    table = guarded_table(schema, s)
    with pytest.raises(SourceRefused, match="cannot insert multiple commands into a prepared statement"):
        list(s.read((table,), *HOUR))
    with pytest.raises(SourceRefused, match="tip_query"):
        s.tip((table,))
    with pytest.raises(SourceRefused):
        s.expected_counts((table,), *HOUR)
    assert untouched(dsn, schema) == (0, 3)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('SELECT t, v FROM "{s}".src WHERE {w}; DELETE FROM "{s}".victim',
         "cannot insert multiple commands into a prepared statement"),
        ('SELECT t, v FROM "{s}".src -- WHERE t >= %(start)s AND t < %(end)s', "0 parameter"),
        ('SELECT t, v FROM "{s}".nowhere WHERE {w}', "does not exist"),
        ('SELECT t FROM "{s}".src WHERE {w}', "no column 'v'"),
        ('SELECT g AS t FROM "{s}".victim, (SELECT "{s}".w()) AS w(n) WHERE %(start)s::timestamptz < %(end)s', "no column 'v'"),
        ('SELECT t, v FROM "{s}".src WHERE {w} AND (SELECT "{s}".w() > 0)', "read-only transaction"),
    ],
    ids=["two-statements", "placeholders-in-a-comment", "missing-table", "missing-column", "writes-wrong-columns",
         "writes-as-it-starts"],
)
def test_the_plans_check_refuses_a_query_that_could_never_serve_the_table(
    guarded: tuple[str, str, str], query: str, message: str
) -> None:
    dsn, conn_id, schema = guarded
    source = SqlSource(conn_id, query.format(s=schema, w=WINDOW))
    table = guarded_table(schema, source)
    with pytest.raises(SourceRefused, match=message) as caught:
        check_before_load(Dataset("checked", (table,)), *HOUR)
    assert str(caught.value).startswith("dataset 'checked': table ")
    assert "sql source's query" in str(caught.value) and conn_id in str(caught.value)
    assert untouched(dsn, schema) == (0, 3)


@pytest.mark.parametrize("flow", ["backfill", "catchup"])
def test_a_plan_refuses_a_query_with_its_placeholders_in_a_comment_before_any_write(
    dsn: str, guarded: tuple[str, str, str], flow: str
) -> None:
    """Without real parameters the query would read every row, whatever the window: refused once, at plan."""
    from tidemark.declare import catalog
    from tidemark.flows import backfill, catchup
    from tidemark.flows.request import BackfillRequest

    _, conn_id, schema = guarded
    target = unique("never_created")
    query = f'SELECT t, v FROM "{schema}".src /* WHERE t >= %(start)s AND t < %(end)s */'
    ds = Dataset(unique("commented"), (guarded_table(target, SqlSource(conn_id, query)),))
    catalog.register(ds)
    try:
        req = BackfillRequest.from_params({"dataset": ds.name, "start": T0.isoformat(),
                                           "end": (T0 + timedelta(hours=2)).isoformat(), "batch_interval": "1 hour"})
        plan = backfill.plan_run if flow == "backfill" else catchup.plan_catchup
        with pytest.raises(SourceRefused) as caught:
            plan(factory(dsn), req, f"commented-{flow}")
    finally:
        catalog.unregister(ds.name)
    assert str(caught.value).startswith(f"dataset {ds.name!r}: table {target}.src: the sql source's query")
    assert "it has 0 parameter(s)" in str(caught.value) and "fix the query" in str(caught.value)
    with connect(dsn) as c:
        assert c.execute("SELECT to_regnamespace(%s) IS NULL", (target,)).fetchone()[0], "nothing was created"
        if c.execute("SELECT to_regclass('tidemark.runs') IS NOT NULL").fetchone()[0]:
            assert c.execute("SELECT count(*) FROM tidemark.runs WHERE dataset = %s", (ds.name,)).fetchone()[0] == 0


# --------------------------------------------------------------------------- files: Parquet and CSV


def write_partitions(root: Path, fmt: str, days: int = 2, per_hour: int = 6) -> list[dict[str, Any]]:
    """Files partitioned by day (root/YYYY/MM/DD/part-N.fmt), two parts a day, rows every 10 minutes."""
    rows: list[dict[str, Any]] = []
    for d in range(days):
        day = T0 + timedelta(days=d)
        folder = root / day.strftime("%Y/%m/%d")
        folder.mkdir(parents=True, exist_ok=True)
        for part in range(2):
            part_rows = [
                {"t": day + timedelta(hours=h, minutes=10 * k), "sensor": f"s{part}", "v": None if k == 3 else h + k / 10,
                 "note": "" if k == 1 else f"n,{k}"}
                for h in range(part * 12, part * 12 + 12) for k in range(per_hour)
            ]
            rows.extend(part_rows)
            tbl = pa.Table.from_pylist(part_rows)
            if fmt == "parquet":
                pq.write_table(tbl, folder / f"part-{part}.parquet", row_group_size=24)
            else:
                lines = ["t;sensor;v;note"] + [
                    f"{r['t'].isoformat()};{r['sensor']};{'NA' if r['v'] is None else r['v']};\"{r['note']}\""
                    for r in part_rows
                ]
                (folder / f"part-{part}.csv").write_text("\n".join(lines) + "\n")
    return sorted(rows, key=lambda r: (r["t"], r["sensor"]))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("through", ["file_url", "object_storage"])
def test_files_source_reads_only_the_window_from_partitioned_files(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, fmt: str, through: str
) -> None:
    from tidemark.sources import access

    rows = write_partitions(tmp_path, fmt)
    table = Hypertable("readings", "t", (Column("t", "timestamptz"), Column("sensor", "text"),
                                         Column("v", "double precision", True), Column("note", "text", True)),
                       timedelta(hours=6), schema=unique("files"))
    url = f"file://{tmp_path}/{{start:%Y/%m/%d}}/part-*.{fmt}"
    table = Hypertable(**{**table.__dict__, "source": FilesSource(url, fmt, delimiter=";" if fmt == "csv" else ",",
                                                                  null="NA", base_dir=tmp_path)})
    ds = Dataset(unique("files"), (table,))
    if through == "object_storage":
        from tidemark.airflow.hooks import object_storage as _object_storage

        access.set_openers(filesystems=_object_storage)
    try:
        ensure_schema(conn, ds)
        source = table.source
        assert isinstance(source, FilesSource)
        window = (T0 + timedelta(hours=22), T0 + timedelta(hours=26))  # spans two days' files
        fs, files = source.files("readings", *window)
        assert [Path(f).parent.name for f in files] == ["01", "01", "02", "02"]
        for i, h in enumerate(range(0, 48, 8)):
            load_batch(factory(dsn), ds, Batch(i, T0 + timedelta(hours=h), T0 + timedelta(hours=h + 8)), "f")
    finally:
        access.set_openers(filesystems=access._fsspec)
    got = read_back(conn, table)
    got.sort(key=lambda r: (r[0], r[1]))
    assert got == [(r["t"], r["sensor"], r["v"], r["note"]) for r in rows]
    counted = source_counts(ds, T0, T0 + timedelta(hours=8))
    assert counted == ({"readings": 48} if fmt == "parquet" else {})
    assert source.tip((table,)) == rows[-1]["t"]


def test_a_source_failing_mid_batch_writes_nothing_and_the_retry_loads_all(dsn: str, conn: psycopg.Connection) -> None:
    table = Hypertable("flaky", "t", (Column("t", "timestamptz"), Column("n", "integer")), timedelta(hours=6),
                       schema=unique("flaky"))
    calls = []

    def flaky(start: datetime, end: datetime) -> Iterator[tuple[datetime, int]]:
        calls.append(start)
        for k in range(50_000):
            if k == 30_000 and len(calls) == 1:
                raise ConnectionResetError("the API hung up mid-window")
            yield start + timedelta(milliseconds=k), k

    ds = Dataset(unique("flaky"), (table,), source=PythonSource(flaky))
    ensure_schema(conn, ds)
    batch = Batch(0, T0, T0 + timedelta(hours=1))
    with pytest.raises(ConnectionResetError):
        load_batch(factory(dsn), ds, batch, "flaky")
    assert read_back(conn, table) == [] and ledger.entries(conn, ds.name, T0, T0 + timedelta(hours=1)) == []
    assert load_batch(factory(dsn), ds, batch, "flaky").rows == {"flaky": 50_000}  # what Airflow's retry does
    assert len(read_back(conn, table)) == 50_000
