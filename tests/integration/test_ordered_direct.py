"""Direct COPY that leaves ordered chunks: sorted rows + client-sorted COPY, checked against classic compression.

TimescaleDB trusts a client-sorted COPY's order without checking it, and an ordered chunk's scans rely on
it: these tests compare ordered scans (``ORDER BY time DESC LIMIT n``, and per segment) of a direct load
against a classic load (COPY, then compress_chunk) of the same rows, delivered out of order by the source.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import registered, unschedule_policies
from tidemark.connection import factory
from tidemark.demo.ledgers import ledgers_dataset
from tidemark.flows import backfill
from tidemark.load.loader import load_batch, replace_window, staged_window
from tidemark.model.batch import Batch
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.sources import PythonSource
from tidemark.timescale import columnstore, compressor, version
from tidemark.timescale.schema import ensure_schema, table_ident

UTC = timezone.utc
T0 = datetime(2024, 3, 1, tzinfo=UTC)  # on a 6-hour chunk boundary
SPAN = timedelta(days=1)
DEVICES = 5


def rows_between(start: datetime, end: datetime) -> list[dict[str, Any]]:
    """One row every 7 s (times unique across devices), a device per row, a NULL every 11th value."""
    first = max(0, -(-int((start - T0).total_seconds()) // 7))
    out = []
    i = first
    while (t := T0 + timedelta(seconds=7 * i)) < min(end, T0 + SPAN):
        out.append({"t": t, "dev": f"d{(i * 7919) % DEVICES}", "seq": i, "v": None if i % 11 == 0 else float(i % 97)})
        i += 1
    return out


def shuffled(kind: str) -> Any:
    """A source function delivering each window's rows out of order, as dicts or as one Arrow table."""
    def fetch(start: datetime, end: datetime) -> Any:
        rows = rows_between(start, end)
        random.Random(start.timestamp()).shuffle(rows)
        if kind == "rows":
            return rows
        import pyarrow as pa
        return pa.Table.from_pylist(rows, schema=pa.schema([
            ("t", pa.timestamp("us", tz="UTC")), ("dev", pa.string()), ("seq", pa.int64()), ("v", pa.float64())]))
    return fetch


def readings(kind: str, orderby: tuple[str, ...], tag: str) -> Dataset:
    table = Hypertable("readings", "t", (Column("t", "timestamptz"), Column("dev", "text"), Column("seq", "bigint"),
                                         Column("v", "double precision", True)),
                       chunk_interval=timedelta(hours=6), segmentby=("dev",), orderby=orderby, schema=f"ord_{tag}")
    return Dataset(f"ord_{tag}", (table,), source=PythonSource(shuffled(kind)))


def statuses(conn: psycopg.Connection, ds: Dataset) -> list[int]:
    return [c.status for c in compressor.list_chunks(conn, ds)]


def load(dsn: str, conn: psycopg.Connection, ds: Dataset, direct: bool, step: timedelta) -> None:
    """The day in windows of ``step``; classic: then compress every chunk as the final pass does."""
    mode = columnstore.with_mode(ds, [t.name for t in ds.tables] if direct else [])
    unschedule_policies(conn, ds)  # the test folds and compresses by hand, as a run whose plan paused them
    start, n = T0, 0
    while start < T0 + SPAN:
        load_batch(factory(dsn), mode, Batch(n, start, min(start + step, T0 + SPAN)), "ordered")
        start, n = start + step, n + 1
    if not direct:
        results, _ = compressor.final_pass(conn, ds, T0, T0 + SPAN, run_id=None)
        assert all(r.ok for r in results)


def scans(conn: psycopg.Connection, ds: Dataset) -> dict[str, list[tuple[Any, ...]]]:
    """Ordered scans an ordered chunk answers from its order: the newest/oldest rows, overall and per segment."""
    ident = table_ident(ds.tables[0])
    out = {}
    for direction in ("DESC", "ASC"):
        q = sql.SQL("SELECT t, dev, seq, v FROM {} ORDER BY t " + direction + " LIMIT 100").format(ident)
        out[f"all {direction}"] = conn.execute(q).fetchall()
        for d in range(DEVICES):
            q = sql.SQL("SELECT t, seq, v FROM {} WHERE dev = %s ORDER BY t " + direction + " LIMIT 50").format(ident)
            out[f"d{d} {direction}"] = conn.execute(q, (f"d{d}",)).fetchall()
    return out


def expected(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    rows = rows_between(T0, T0 + SPAN)
    out = {}
    for direction, reverse in (("DESC", True), ("ASC", False)):
        ordered = sorted(rows, key=lambda r: r["t"], reverse=reverse)
        out[f"all {direction}"] = [(r["t"], r["dev"], r["seq"], r["v"]) for r in ordered[:100]]
        for d in range(DEVICES):
            out[f"d{d} {direction}"] = [(r["t"], r["seq"], r["v"]) for r in ordered if r["dev"] == f"d{d}"][:50]
    return out


@pytest.fixture
def tag() -> Iterator[str]:
    yield uuid.uuid4().hex[:8]


@pytest.mark.parametrize("orderby", [(), ("t", "seq")], ids=["default-orderby", "declared-orderby"])
@pytest.mark.parametrize("kind", ["rows", "arrow"])
def test_sorted_direct_copy_leaves_ordered_chunks_whose_ordered_scans_match_classic(
    dsn: str, conn: psycopg.Connection, tag: str, kind: str, orderby: tuple[str, ...]
) -> None:
    direct, classic = readings(kind, orderby, tag + "d"), readings(kind, orderby, tag + "c")
    for ds in (direct, classic):
        ensure_schema(conn, ds)
    order = columnstore.chunk_order(conn, direct.tables[0], version.server(conn))
    assert order is not None and order.segmentby == ("dev",)
    assert order.orderby[0] == columnstore.SortKey("t", descending=not orderby, nulls_first=not orderby)
    load(dsn, conn, direct, direct=True, step=timedelta(hours=12))  # 2 whole chunks a batch
    load(dsn, conn, classic, direct=False, step=timedelta(hours=12))
    assert statuses(conn, direct) == [columnstore.COMPRESSED] * 4  # compressed, none unordered or partial
    assert statuses(conn, classic) == [columnstore.COMPRESSED] * 4
    got = scans(conn, direct)
    assert got == scans(conn, classic) == expected(conn)


def test_the_comparison_catches_a_false_promise(dsn: str, conn: psycopg.Connection, tag: str) -> None:
    """Flag unsorted rows as sorted (what Tidemark must never do): ordered scans then return wrong rows."""
    ds = readings("rows", (), tag)
    ensure_schema(conn, ds)
    mode = columnstore.with_mode(ds, ["readings"])
    batch = Batch(0, T0, T0 + SPAN)
    with staged_window(mode, batch) as staged, conn.transaction():
        conn.execute("SET LOCAL timescaledb.enable_direct_compress_copy = on")
        staged["readings"].sorted = True  # a lie: the rows are as the source shuffled them
        replace_window(conn, mode, batch, staged)
    assert statuses(conn, ds) == [columnstore.COMPRESSED] * 4  # the server took the promise
    got, want = scans(conn, ds), expected(conn)
    assert any(got[k] != want[k] for k in want)


def test_a_batch_sharing_its_chunks_is_not_sorted_and_its_chunks_are_folded(
    dsn: str, conn: psycopg.Connection, tag: str
) -> None:
    ds = readings("arrow", (), tag)
    ensure_schema(conn, ds)
    mode = columnstore.with_mode(ds, ["readings"])
    assert columnstore.sorted_tables(conn, mode, T0, T0 + timedelta(hours=12)) == {
        "readings": columnstore.chunk_order(conn, ds.tables[0], version.server(conn))}
    assert columnstore.sorted_tables(conn, mode, T0, T0 + timedelta(hours=9)) == {}  # ends mid-chunk
    assert columnstore.sorted_tables(conn, columnstore.with_mode(ds, []), T0, T0 + timedelta(hours=12)) == {}
    load(dsn, conn, ds, direct=True, step=timedelta(hours=9))  # [0, 9) [9, 18) [18, 24): only the last is whole
    unordered = columnstore.COMPRESSED | columnstore.UNORDERED
    assert statuses(conn, ds) == [unordered, unordered, unordered, columnstore.COMPRESSED]
    results, _ = compressor.final_pass(conn, ds, T0, T0 + SPAN, run_id=None, recompress_unordered=True)
    assert [r.action for r in results] == ["recompressed"] * 3 + ["unchanged"]
    assert statuses(conn, ds) == [columnstore.COMPRESSED] * 4
    assert scans(conn, ds) == expected(conn)


def test_an_existing_chunk_reaching_past_the_window_stops_sorting(dsn: str, conn: psycopg.Connection, tag: str) -> None:
    ds = readings("arrow", (), tag)
    ensure_schema(conn, ds)
    table = ds.tables[0]
    conn.execute("SELECT set_chunk_time_interval(%s::regclass, interval '1 day')", (table_ident(table).as_string(conn),))
    conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, 'd0', 0, 1)").format(table_ident(table)), (T0,))  # a 1-day chunk
    conn.execute("SELECT set_chunk_time_interval(%s::regclass, interval '6 hours')", (table_ident(table).as_string(conn),))
    assert not columnstore.whole_chunks(conn, table, T0, T0 + timedelta(hours=12))
    assert columnstore.whole_chunks(conn, table, T0, T0 + SPAN)
    assert columnstore.whole_chunks(conn, table, T0 + SPAN, T0 + SPAN + timedelta(hours=6))


def test_demo_range_direct_load_leaves_no_unordered_chunk_and_the_policy_recompresses_nothing(
    dsn: str, conn: psycopg.Connection, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(columnstore.ENV, raising=False)
    with registered(ledgers_dataset(name=f"ledgers_{tag}", schema=f"demo_{tag}")) as ds:
        connect = factory(dsn)
        start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 5, tzinfo=UTC)  # make demo's range
        request = backfill.BackfillRequest.from_params(
            {"dataset": ds.name, "start": start.isoformat(), "end": end.isoformat(), "batch_interval": "auto"})
        planned = backfill.plan_run(connect, request, f"demo-{tag}")
        summary, batches = planned["plan"], planned["batches"]
        assert summary["direct_compress"] == ["ledgers", "transactions", "operations"]
        results = {b["index"]: backfill.insert_batch(connect, summary, b) for b in batches}
        report = backfill.finalize(connect, summary, {i: "success" for i in results}, results)
        assert report is not None and report["chunks"]["compressed_in_final_pass"] == 0

        def chunk_states() -> dict[str, tuple[int, int]]:
            return dict((r[0], (r[1], r[2])) for r in conn.execute(
                "SELECT c.table_name, c.status, c.compressed_chunk_id FROM _timescaledb_catalog.chunk c"
                " JOIN _timescaledb_catalog.hypertable h ON h.id = c.hypertable_id"
                " WHERE h.schema_name = %s AND NOT coalesce((to_jsonb(c) ->> 'dropped')::bool, false)",  # gone in 2.28
                (ds.tables[0].schema,)).fetchall())

        before = chunk_states()
        assert len(before) == 48 and all(status == columnstore.COMPRESSED for status, _ in before.values())
        jobs = [r[0] for r in conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'"
            " AND hypertable_schema = %s", (ds.tables[0].schema,)).fetchall()]
        assert len(jobs) == 3
        for job in jobs:
            conn.execute("CALL run_job(%s)", (job,))
        assert chunk_states() == before  # nothing recompressed: same status, same compressed chunk each
