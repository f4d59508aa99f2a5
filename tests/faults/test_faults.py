"""The fault suite: whatever breaks, nothing loaded is lost or duplicated.

The oracle is a clean run of the same params into a fresh dataset: after a
fault and the documented recovery, every table must hold the same rows
(counts per window and a checksum of all rows) and every chunk in the window
must be compressed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import REPO, EmbeddedEngine, registered, unique_dataset, unschedule_policies
from tidemark.flows import backfill, progressive
from tidemark.timescale import compressor
from tidemark.state import ledger, runs
from tidemark.connection import DatabaseUnreachable, connect, factory
from tidemark.errors import BadRow
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.errors import InvalidInput
from tidemark.load.loader import load_batch
from tidemark.retrying import is_transient
from tidemark.model.batch import Batch
from tidemark.timescale.schema import ensure_schema, table_ident
from tidemark.sources import PythonSource
from tidemark.flows.verify import checksum, source_counts, window_counts

UTC = timezone.utc
START = datetime(2024, 9, 1, tzinfo=UTC)
HOURS = 12
END = START + timedelta(hours=HOURS)
STEP = "1 hour"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def faults_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIDEMARK_FAULT_DIR", str(tmp_path / "fault-counters"))
    monkeypatch.setenv("TIDEMARK_FAULT_MARKER", str(tmp_path / "marker"))
    return tmp_path / "marker"


def request(ds: Dataset, start: datetime = START, end: datetime = END, step: str = STEP) -> backfill.BackfillRequest:
    return backfill.BackfillRequest.from_params(
        {"dataset": ds.name, "start": start.isoformat(), "end": end.isoformat(), "batch_interval": step}
    )


def run_backfill(
    dsn: str, ds: Dataset, run_id: str, *, start: datetime = START, end: datetime = END,
    alive: Any = lambda run_id: True,
) -> dict[str, Any]:
    """A whole backfill through the library, in batch order, poking after each batch."""
    connect_ = factory(dsn)
    planned = backfill.plan_run(connect_, request(ds, start, end), run_id, alive)
    summary, batches = planned["plan"], planned["batches"]
    states: dict[int, str] = {}
    results: dict[int, dict] = {}
    for b in batches:
        results[b["index"]] = backfill.insert_batch(connect_, summary, b)
        states[b["index"]] = "success"
        progressive.poke(connect_, summary, states)
    return backfill.finalize(connect_, summary, states, results)


@pytest.fixture(scope="module")
def oracle(dsn: str) -> dict[str, Any]:
    """A clean run of the same params into a fresh dataset: per-window counts and row checksums."""
    with connect(dsn) as conn:
        ds = unique_dataset(conn)
    with registered(ds):
        run_backfill(dsn, ds, "oracle")
        with connect(dsn) as conn:
            return snapshot(conn, ds)


def snapshot(conn: psycopg.Connection, ds: Dataset) -> dict[str, Any]:
    windows = [(START + timedelta(hours=h), START + timedelta(hours=h + 1)) for h in range(HOURS)]
    return {"windows": window_counts(conn, ds, windows), "checksum": checksum(conn, ds, START, END)}


def assert_equals_clean_run(conn: psycopg.Connection, ds: Dataset, oracle: dict[str, Any]) -> None:
    got = snapshot(conn, ds)
    assert got["windows"] == oracle["windows"], "row counts per window differ from the clean run"
    assert got["checksum"] == oracle["checksum"], "rows differ from the clean run (lost or duplicated)"
    chunks = compressor.list_chunks(conn, ds, START, END)
    assert chunks and all(c.is_compressed for c in chunks), "not every chunk in the window is compressed"


def kill_mid_backfill_then_resume(
    engine: EmbeddedEngine, d: Dataset, run_id: str, *, durable: int, in_flight: int
) -> dict[str, Any]:
    """Load ``durable`` batches with a poke after each, ``in_flight`` more, kill -9 the engine, then resume the run.

    Requires the kill to have lost asynchronous commits (the trade-off under test) and finalize to reload
    exactly those; returns finalize's report.
    """
    connect_ = factory(engine.dsn)
    planned = backfill.plan_run(connect_, request(d), run_id)
    summary, batches = planned["plan"], planned["batches"]
    states: dict[int, str] = {}
    results: dict[int, dict] = {}

    def load(some: list[dict[str, Any]], poke_each: bool, compress: bool = True) -> None:
        for b in some:
            results[b["index"]] = backfill.insert_batch(connect_, summary, b, compress=compress)
            states[b["index"]] = "success"
            if poke_each:  # progressive compression makes these durable
                progressive.poke(connect_, summary, states)

    load(batches[:durable], poke_each=True)
    # Asynchronous commits still in flight: nothing compressed or logged after them (a compression's commit
    # drops the chunk's heap files, which PostgreSQL always flushes, making every earlier commit durable).
    load(batches[durable:durable + in_flight], poke_each=False, compress=False)
    engine.kill9()
    engine.start()
    with connect(engine.dsn) as conn:
        lost = [b["index"] for b in batches[:durable + in_flight]
                if not ledger.entries(conn, d.name, Batch.from_dict(b).start, Batch.from_dict(b).end)]
    assert lost, "expected the kill to lose asynchronous commits (the trade-off under test)"
    # Resume the same run: the remaining batches, then finalize, which must find and reload the lost ones.
    load(batches[durable + in_flight:], poke_each=False)
    progressive.poke(connect_, summary, states)
    report = backfill.finalize(connect_, summary, states, results)
    assert report["batches"]["reloaded_after_verification"] == len(lost)
    return report


@pytest.fixture
def ds(conn: psycopg.Connection) -> Iterator[Dataset]:
    with registered(unique_dataset(conn)) as d:
        yield d


# --------------------------------------------------------------------------- 1. engine kill -9


def test_engine_killed_mid_backfill_then_resumed_equals_clean_run(
    private_engine: EmbeddedEngine, oracle: dict[str, Any]
) -> None:
    private_engine.start()
    dsn = private_engine.dsn
    with connect(dsn) as conn:
        d = unique_dataset(conn)
    with registered(d):
        kill_mid_backfill_then_resume(private_engine, d, "killed", durable=5, in_flight=4)
        with connect(dsn) as conn:
            assert_equals_clean_run(conn, d, oracle)


def test_engine_killed_then_new_run_with_same_params_equals_clean_run(
    private_engine: EmbeddedEngine, oracle: dict[str, Any]
) -> None:
    private_engine.start()
    dsn = private_engine.dsn
    with connect(dsn) as conn:
        d = unique_dataset(conn)
    with registered(d):
        connect_ = factory(dsn)
        planned = backfill.plan_run(connect_, request(d), "first")
        for b in planned["batches"][:7]:
            backfill.insert_batch(connect_, planned["plan"], b)
        private_engine.kill9()
        private_engine.start()
        with pytest.raises(runs.RunConflict, match="overlaps backfill run 'first'"):
            backfill.plan_run(connect_, request(d), "second")  # its claim looks alive...
        # ...until the orchestrator says that run has ended (Airflow: its DagRun failed).
        report = run_backfill(dsn, d, "second", alive=lambda run_id: run_id != "first")
        assert report["batches"]["loaded"] + report["batches"]["already_loaded"] == HOURS
        with connect(dsn) as conn:
            assert_equals_clean_run(conn, d, oracle)


# --------------------------------------------------------------------------- 2. batch killed / raising


_LOADER = """
import sys
sys.path.insert(0, {plugins!r})
from datetime import datetime
from tidemark.declare import catalog
from tidemark.connection import factory
from tidemark.demo.ledgers import ledgers_dataset
from tidemark.load.loader import load_batch
from tidemark.model.batch import Batch
catalog.register({name!r}, lambda: ledgers_dataset(name={name!r}, schema={schema!r}))
load_batch(factory({dsn!r}), catalog.get({name!r}), Batch(3, datetime.fromisoformat({start!r}), datetime.fromisoformat({end!r})), "killed-worker")
"""


def test_batch_process_killed_mid_copy_then_retried_has_no_duplicates(
    dsn: str, conn: psycopg.Connection, ds: Dataset, faults_env: Path
) -> None:
    batch = Batch(3, START + timedelta(hours=3), START + timedelta(hours=4))
    load_batch(factory(dsn), ds, batch, "earlier")  # the window already holds rows: a replay must not double them
    code = _LOADER.format(plugins=str(REPO / "plugins"), name=ds.name, schema=ds.tables[0].schema, dsn=dsn,
                          start=batch.start.isoformat(), end=batch.end.isoformat())
    env = {**os.environ, "TIDEMARK_FAULTS": "insert_batch.mid_copy@3", "TIDEMARK_FAULT_PAUSE": "60"}
    worker = subprocess.Popen([sys.executable, "-c", code], env=env)
    for _ in range(400):
        if faults_env.exists():
            break
        time.sleep(0.05)
    assert faults_env.exists(), "the worker never reached the middle of its COPY"
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    expected = source_counts(ds, batch.start, batch.end)
    table = ds.table("operations")
    count = sql.SQL("SELECT count(*) FROM {} WHERE close_time >= %s AND close_time < %s").format(table_ident(table))
    assert conn.execute(count, (batch.start, batch.end)).fetchone()[0] == expected["operations"]  # rolled back, not half-done
    result = load_batch(factory(dsn), ds, batch, "retry")  # the task's retry
    assert result.rows == expected
    assert {t: n for t, (n, _) in checksum(conn, ds, batch.start, batch.end).items()} == expected
    assert [e.run_id for e in ledger.entries(conn, ds.name, batch.start, batch.end)] == ["retry"]


def test_batch_raising_after_commit_converges_on_retry(
    dsn: str, conn: psycopg.Connection, ds: Dataset, faults_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDEMARK_FAULTS", "insert_batch.after_commit@2x1")
    connect_ = factory(dsn)
    planned = backfill.plan_run(connect_, request(ds), "after-commit")
    summary, batches = planned["plan"], planned["batches"]
    states: dict[int, str] = {}
    results: dict[int, dict] = {}
    for b in batches:
        for attempt in range(3):  # Airflow's retries
            try:
                results[b["index"]] = backfill.insert_batch(connect_, summary, b)
                states[b["index"]] = "success"
                break
            except Exception as exc:  # noqa: BLE001
                assert "injected fault insert_batch.after_commit@2" in str(exc) and attempt == 0
        progressive.poke(connect_, summary, states)
    backfill.finalize(connect_, summary, states, results)
    snap = snapshot(conn, ds)
    expected = [source_counts(ds, START + timedelta(hours=h), START + timedelta(hours=h + 1)) for h in range(HOURS)]
    assert snap["windows"] == expected


# --------------------------------------------------------------------------- 3. compression errors


def test_compression_error_is_retried_on_a_later_poke(
    dsn: str, conn: psycopg.Connection, ds: Dataset, faults_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sensor's compression (classic COPY: direct COPY leaves nothing to compress), with the batches'
    # own compression of what they complete left out so that the sensor meets the error.
    monkeypatch.setenv("TIDEMARK_DIRECT_COMPRESS", "off")
    connect_ = factory(dsn)
    planned = backfill.plan_run(connect_, request(ds, START, START + timedelta(hours=6)), "compress-err")
    summary, batches = planned["plan"], planned["batches"]
    results = {b["index"]: backfill.insert_batch(connect_, summary, b, compress=False) for b in batches}
    states = {i: "success" for i in results}
    monkeypatch.setenv("TIDEMARK_FAULTS", "compress.error@*x3")  # every attempt for the first chunk fails
    first = progressive.poke(connect_, summary, states)
    assert first.compress_failures == 1 and first.compressed_now == 2
    assert "failed, retried next poke" in first.line()
    second = progressive.poke(connect_, summary, states)
    assert second.compress_failures == 0 and second.compressed_now == 1
    assert all(c.is_compressed for c in compressor.list_chunks(conn, ds, START, START + timedelta(hours=6)))


def test_lock_timeouts_and_deadlocks_count_as_transient() -> None:
    for exc in (psycopg.errors.LockNotAvailable("lock timeout"), psycopg.errors.DeadlockDetected("deadlock"),
                psycopg.errors.SerializationFailure("serialization"), DatabaseUnreachable("down")):
        assert is_transient(exc), type(exc).__name__
    for exc in (psycopg.errors.CheckViolation("check"), psycopg.errors.DiskFull("disk full"), ValueError("x")):
        assert not is_transient(exc), type(exc).__name__


# --------------------------------------------------------------------------- 4. sensor killed


def test_sensor_retry_reads_the_watermark_from_the_ledger(dsn: str, conn: psycopg.Connection, ds: Dataset) -> None:
    """The watermark is the committed prefix in the ledger: a lost commit holds it back, a lost progress row does not."""
    connect_ = factory(dsn)
    planned = backfill.plan_run(connect_, request(ds), "sensor-retry")
    summary, batches = planned["plan"], planned["batches"]
    for b in batches[:8]:
        backfill.insert_batch(connect_, summary, b)
    states: dict[int, str | None] = {b["index"]: "success" for b in batches[:8]}
    # Batch 5's asynchronous commit was lost in a crash (its rows and its ledger row with it): the prefix stops there.
    # Commits are lost in WAL order, so the progress the batches recorded after it (the watermark they saw) went too.
    conn.execute("DELETE FROM tidemark.batch_ledger WHERE dataset = %s AND window_start = %s",
                 (ds.name, batches[5]["start"]))
    conn.execute("UPDATE tidemark.runs SET watermark_batches = 0, watermark_time = NULL WHERE run_id = %s",
                 (summary["run_id"],))
    assert progressive.poke(connect_, summary, states).watermark.completed == 5
    backfill.insert_batch(connect_, summary, batches[5])  # its retry
    assert progressive.poke(connect_, summary, states).watermark.completed == 8
    # A lost progress row (or a first poke after a crash) starts from the run's start and converges.
    conn.execute("UPDATE tidemark.runs SET watermark_batches = 0, watermark_time = NULL WHERE run_id = %s",
                 (summary["run_id"],))
    assert progressive.poke(connect_, summary, states).watermark.completed == 8


# --------------------------------------------------------------------------- 5. overlapping runs


def test_a_second_overlapping_run_is_refused_up_front(dsn: str, conn: psycopg.Connection, ds: Dataset) -> None:
    backfill.plan_run(factory(dsn), request(ds), "run-A")
    before = conn.execute("SELECT count(*) FROM tidemark.runs").fetchone()[0]
    with pytest.raises(runs.RunConflict, match="overlaps backfill run 'run-A'"):
        backfill.plan_run(factory(dsn), request(ds, START + timedelta(hours=6), END + timedelta(hours=6)), "run-B")
    assert conn.execute("SELECT count(*) FROM tidemark.runs").fetchone()[0] == before
    # A window that does not overlap may run at the same time.
    backfill.plan_run(factory(dsn), request(ds, END, END + timedelta(hours=2)), "run-C")


# --------------------------------------------------------------------------- 7. database errors in a batch


@pytest.mark.parametrize(
    ("ddl", "error"),
    [
        ("ALTER TABLE {} ADD CONSTRAINT tiny_amounts CHECK (amount < 1000)", psycopg.errors.CheckViolation),
        (
            "CREATE TRIGGER disk_full BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION pg_temp_disk_full()",
            psycopg.errors.DiskFull,
        ),
    ],
)
def test_database_errors_fail_the_batch_and_the_ledger_does_not_claim_it(
    dsn: str, conn: psycopg.Connection, ds: Dataset, ddl: str, error: type[Exception]
) -> None:
    table = table_ident(ds.table("operations"))
    fn = sql.Identifier(ds.tables[0].schema, "disk_full")
    conn.execute(sql.SQL(
        "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100'; END $$"
    ).format(fn))
    conn.execute(sql.SQL(ddl.replace("pg_temp_disk_full()", "{fn}()").replace("{}", "{tbl}")).format(tbl=table, fn=fn))
    connect_ = factory(dsn)
    planned = backfill.plan_run(connect_, request(ds, START, START + timedelta(hours=2)), "db-error")
    with pytest.raises(error) as caught:
        backfill.insert_batch(connect_, planned["plan"], planned["batches"][0])
    assert ("tiny_amounts" in str(caught.value)) or ("No space left" in str(caught.value))
    assert ledger.entries(conn, ds.name, START, START + timedelta(hours=2)) == []
    assert all(n == 0 for n, _ in checksum(conn, ds, START, START + timedelta(hours=2)).values())
    with pytest.raises(backfill.RunFailed, match=r"batches \[0, 1\] failed"):
        backfill.finalize(connect_, planned["plan"], {0: "failed", 1: "upstream_failed"}, {})


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2024-01-02", "end": "2024-01-01"}, "start"),
        ({"start": "2024-01-01", "end": "2024-01-01"}, "start"),
        ({"start": "next tuesday", "end": "2024-01-01"}, "next tuesday"),
        ({"start": "2024-01-01", "end": "2024-01-02", "batch_interval": "-1 hours"}, "interval"),
        ({"start": "2024-01-01", "end": "2024-01-02", "batch_interval": "0 minutes"}, "positive"),
        ({"start": "2024-01-01", "end": "2024-01-02", "batch_interval": "a while"}, "a while"),
        ({"start": "2024-01-01", "end": "2024-02-01", "batch_interval": "30 minutes"}, "1024"),
        ({"dataset": "nope", "start": "2024-01-01", "end": "2024-01-02"}, "unknown dataset"),
    ],
)
def test_bad_input_is_refused_before_any_write(conn: psycopg.Connection, params: dict[str, Any], message: str) -> None:
    before = conn.execute("SELECT count(*) FROM tidemark.runs").fetchone()[0]
    schemas = conn.execute("SELECT count(*) FROM pg_namespace").fetchone()[0]
    with pytest.raises(InvalidInput, match=message):
        req = backfill.BackfillRequest.from_params({"dataset": "ledgers", **params})
        backfill.plan_run(factory("postgresql://invalid"), req, "bad")  # never reached: no connection is even opened
    assert conn.execute("SELECT count(*) FROM tidemark.runs").fetchone()[0] == before
    assert conn.execute("SELECT count(*) FROM pg_namespace").fetchone()[0] == schemas


@pytest.mark.parametrize(
    "make",
    [
        lambda: Column("t'; DROP TABLE canary; --", "timestamptz"),
        lambda: Column('v"; DELETE FROM canary', "bigint"),
        lambda: Hypertable('ro"ws); DROP TABLE canary; --', "t"),
        lambda: Hypertable("rows", "t", schema='ev"il; DROP TABLE canary; --'),
        lambda: Hypertable("rows", "t", segmentby=("k;k",)),
        lambda: Column("x" * 64, "text"),
        lambda: Column("c", "text); DROP TABLE canary; --"),
    ],
)
def test_hostile_identifiers_and_types_are_refused(conn: psycopg.Connection, make: Any) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS canary (x int)")
    with pytest.raises(InvalidInput, match="quote, semicolon|longer than 63 bytes|unsupported column type"):
        make()
    assert conn.execute("SELECT to_regclass('canary') IS NOT NULL").fetchone()[0]


def test_odd_but_legal_identifiers_are_quoted_never_formatted_in(dsn: str, conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS canary (x int)")
    tag = uuid.uuid4().hex[:8]  # names of this run's own: the test runs again against the same server
    ts = Column("Time Stamp", "timestamptz")
    table = Hypertable(
        name="Rows-DROP TABLE canary --",
        time_column=ts.name,
        columns=(ts, Column("v DELETE FROM canary", "bigint"), Column("k-k", "text")),
        chunk_interval=timedelta(hours=6),
        segmentby=("k-k",),
        orderby=(ts.name,),
        schema=f"Ev il -- DROP TABLE canary {tag}",
    )

    def rows(start: datetime, end: datetime) -> Iterator[tuple[object, ...]]:
        t = start
        while t < end:
            yield (t, 1, "a'b\"c;")
            t += timedelta(minutes=10)

    evil = Dataset(name=f"odd_names_{tag}", tables=(table,), source=PythonSource(rows))
    ensure_schema(conn, evil)
    unschedule_policies(conn, evil)  # it compresses by hand below, as a run whose plan paused the policy
    result = load_batch(factory(dsn), evil, Batch(0, START, START + timedelta(hours=12)), f"evil-{tag}")
    assert result.rows == {table.name: 72}
    compressed = compressor.compress_behind(conn, evil, START, START + timedelta(hours=12), run_id=f"evil-{tag}")
    assert [r.action for r in compressed] == ["compressed", "compressed"]
    assert conn.execute("SELECT to_regclass('canary') IS NOT NULL").fetchone()[0]
    assert conn.execute(sql.SQL("SELECT {} FROM {} LIMIT 1").format(
        sql.Identifier("k-k"), table_ident(table))).fetchone()[0] == "a'b\"c;"


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ((START - timedelta(seconds=1), 1, "x"), "outside the batch window"),
        ((START + timedelta(minutes=1), 1), "has 2 values, expected 3"),
        ((START + timedelta(minutes=1), "one", "x"), "got str 'one'"),
        ((START + timedelta(minutes=1), 1, None), "NULL in NOT NULL column"),
        (("2024-09-01", 1, "x"), "not a timezone-aware datetime"),
    ],
)
def test_a_source_yielding_bad_rows_fails_the_batch_before_any_write(
    dsn: str, conn: psycopg.Connection, bad_row: tuple[object, ...], message: str
) -> None:
    ts = Column("t", "timestamptz")
    table = Hypertable("bad_rows", "t", (ts, Column("v", "bigint"), Column("s", "text")), timedelta(hours=6),
                       schema=f"badrows_{abs(hash(message)) % 10**8}")

    def rows(start: datetime, end: datetime) -> Iterator[tuple[object, ...]]:
        yield (start, 0, "fine")
        yield bad_row

    bad = Dataset(name=f"bad_{table.schema}", tables=(table,), source=PythonSource(rows))
    ensure_schema(conn, bad)
    with pytest.raises(BadRow, match=message) as caught:
        load_batch(factory(dsn), bad, Batch(0, START, START + timedelta(hours=1)), "bad")
    when = bad_row[0]
    shown = when.isoformat() if isinstance(when, datetime) else repr(when)  # the row's time, or the value refused
    assert shown in str(caught.value), str(caught.value)
    assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table_ident(table))).fetchone()[0] == 0
    assert ledger.entries(conn, bad.name, START, END) == []


def test_unreachable_database_names_the_connection_without_the_password() -> None:
    with pytest.raises(DatabaseUnreachable) as caught:
        connect("postgresql://loader:hunter2-secret@127.0.0.1:1/postgres?sslmode=disable", connect_timeout=2)
    text = str(caught.value)
    assert "127.0.0.1" in text and "hunter2-secret" not in text and "Traceback" not in text
    with pytest.raises(DatabaseUnreachable, match="Airflow connection 'tidemark_timescale'"):
        connect("postgresql://loader:hunter2-secret@127.0.0.1:1/postgres", label="Airflow connection 'tidemark_timescale'",
                connect_timeout=2)
