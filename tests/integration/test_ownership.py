"""Two datasets declaring one hypertable: the first to claim it owns it, the other is refused before writing."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PostgresServer, load_through_library, rows_in
from tidemark.connection import connect, factory
from tidemark.declare import catalog
from tidemark.demo.ledgers import ledgers_dataset
from tidemark.errors import InvalidInput
from tidemark.flows import backfill, catchup, live
from tidemark.load.loader import load_batch
from tidemark.model.batch import Batch
from tidemark.model.dataset import Dataset, Hypertable
from tidemark.state import cursors, owners, tables

UTC = timezone.utc
DAY = datetime(2024, 7, 1, tzinfo=UTC)
SIX, NOON = DAY + timedelta(hours=6), DAY + timedelta(hours=12)


class EmptySource:
    """A source with nothing in any window: loaded over a window, it would leave the window empty."""

    def read(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> Iterator[tuple[str, Any]]:
        return iter(())


@contextlib.contextmanager
def intruder(owner: Dataset, source: Any = None) -> Iterator[Dataset]:
    """A second registered dataset declaring the owner's very tables (its own name, the same schema)."""
    ds = ledgers_dataset(name=f"other_{uuid.uuid4().hex[:8]}", schema=owner.tables[0].schema)
    ds = replace(ds, source=source or EmptySource())
    catalog.register(ds)
    try:
        yield ds
    finally:
        catalog.unregister(ds.name)


def request(ds: Dataset, start: datetime = DAY, end: datetime = DAY + timedelta(days=1), step: str = "3 hours",
            **kw: Any) -> backfill.BackfillRequest:
    return backfill.BackfillRequest.from_params(
        {"dataset": ds.name, "start": start.isoformat(), "end": end.isoformat(), "batch_interval": step, **kw}
    )


def owned(dsn: str, ds: Dataset) -> list[tuple[str, str]]:
    """(dataset, claimed_by_run) of each of the dataset's tables, in table order."""
    with connect(dsn) as conn:
        found = owners.recorded(conn, ds.tables)
    return [(found[(t.schema, t.name)].dataset, found[(t.schema, t.name)].claimed_by_run) for t in ds.tables]


def ledger_rows(conn: psycopg.Connection, ds: Dataset) -> int:
    return int(conn.execute("SELECT count(*) FROM tidemark.batch_ledger WHERE dataset = %s", (ds.name,)).fetchone()[0])


@pytest.fixture
def loaded(dsn: str, registered_dataset: Dataset) -> Dataset:
    """The owner: its day loaded through the backfill steps (run ``own-1``), so its tables hold rows."""
    load_through_library(dsn, request(registered_dataset), "own-1")
    return registered_dataset


def test_a_second_dataset_on_the_same_table_is_refused_at_plan_naming_the_owner(
    dsn: str, conn: psycopg.Connection, loaded: Dataset
) -> None:
    before = rows_in(conn, loaded, DAY, DAY + timedelta(days=1))
    assert before["ledgers"] > 0
    with intruder(loaded) as other:
        for dry_run in (True, False):
            with pytest.raises(owners.NotOwner) as refused:
                backfill.plan_run(factory(dsn), request(other, SIX, NOON, dry_run=dry_run), f"other-{dry_run}")
            text = str(refused.value)
            assert f"{', '.join(sorted(t.qualified for t in loaded.tables))} are owned by dataset {loaded.name!r}" in text
            assert "by run 'own-1'" in text and "DELETE FROM tidemark.hypertable_owners" in text
            assert refused.value.dataset == other.name
            assert {o.dataset for o in refused.value.taken} == {loaded.name}
        assert isinstance(refused.value, InvalidInput)  # the Airflow layer fails it for good: no retry
        assert rows_in(conn, loaded, DAY, DAY + timedelta(days=1)) == before
        assert ledger_rows(conn, other) == 0
        assert conn.execute("SELECT count(*) FROM tidemark.runs WHERE dataset = %s", (other.name,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM tidemark.paused_policies WHERE dataset = %s",
                            (other.name,)).fetchone()[0] == 0
    assert owned(dsn, loaded) == [(loaded.name, "own-1")] * 3


def test_a_refused_claim_takes_none_of_the_tables_it_could_have(dsn: str, conn: psycopg.Connection, loaded: Dataset) -> None:
    """One shared table is enough to refuse; the other dataset's new tables stay unowned, not half-claimed."""
    with intruder(loaded) as other:
        mixed = other.with_tables([loaded.tables[0], *(replace(t, schema=f"x_{uuid.uuid4().hex[:8]}") for t in other.tables[1:])])
        with pytest.raises(owners.NotOwner, match=f"owned by dataset {loaded.name!r}"):
            owners.claim(conn, other.name, mixed.tables, "mixed")
        assert owners.recorded(conn, mixed.tables[1:]) == {}


def test_a_write_planned_before_the_owner_claimed_fails_inside_its_transaction(
    dsn: str, conn: psycopg.Connection, loaded: Dataset
) -> None:
    """Called without a plan (a run planned before the owner claimed): the batch's own check refuses it."""
    before = rows_in(conn, loaded, DAY, DAY + timedelta(days=1))
    with intruder(loaded) as other:
        with pytest.raises(owners.NotOwner, match=f"owned by dataset {loaded.name!r}"):
            load_batch(factory(dsn), other, Batch(0, SIX, NOON), "planned-earlier")
        assert rows_in(conn, loaded, DAY, DAY + timedelta(days=1)) == before
        assert ledger_rows(conn, other) == 0
    assert owned(dsn, loaded) == [(loaded.name, "own-1")] * 3


def test_the_check_holds_the_owner_rows_until_the_write_commits(source_pg: PostgresServer) -> None:
    """A hand-over (DELETE or UPDATE of an owner row) cannot slip between a write's check and its commit.

    On a real PostgreSQL server: the embedded engine runs one client's transaction at a time, so there a
    hand-over waits for the write whatever it locks. The owner table needs nothing of TimescaleDB.
    """
    name = f"owners_{uuid.uuid4().hex[:8]}"
    with connect(source_pg.dsn) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = source_pg.dsn.rsplit("/", 1)[0] + "/" + name
    ds = ledgers_dataset(name="held", schema="h")
    where = " WHERE schema_name = 'h' AND table_name = 'ledgers'"
    try:
        with connect(dsn) as writer, connect(dsn) as operator:
            with writer.transaction():
                tables.ensure(writer)
            owners.claim(writer, ds.name, ds.tables, "plan")
            operator.execute("SET lock_timeout = '200ms'")
            with writer.transaction():
                owners.check(writer, ds.name, ds.tables, "batch")
                for hand_over in ("DELETE FROM tidemark.hypertable_owners", "UPDATE tidemark.hypertable_owners SET dataset = 'b'"):
                    with pytest.raises(psycopg.errors.LockNotAvailable):
                        operator.execute(hand_over + where)
            assert operator.execute("DELETE FROM tidemark.hypertable_owners" + where).rowcount == 1  # committed: it goes through
    finally:
        with connect(source_pg.dsn) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_table_without_an_owner_row_goes_to_its_next_writer(dsn: str, conn: psycopg.Connection, loaded: Dataset) -> None:
    """Rows written before ownership was recorded: the first dataset to claim (or write) gets them."""
    conn.execute("DELETE FROM tidemark.hypertable_owners WHERE dataset = %s", (loaded.name,))
    load_batch(factory(dsn), loaded, Batch(0, SIX, NOON), "after-upgrade")
    assert owned(dsn, loaded) == [(loaded.name, "after-upgrade")] * 3
    with intruder(loaded) as other, pytest.raises(owners.NotOwner, match="by run 'after-upgrade'"):
        backfill.plan_run(factory(dsn), request(other, SIX, NOON), "other")


def test_catchup_publish_refuses_a_table_claimed_since_it_was_planned(dsn: str, conn: psycopg.Connection,
                                                                    registered_dataset: Dataset) -> None:
    with intruder(registered_dataset) as other:
        planned = catchup.plan_catchup(factory(dsn), request(other, SIX, NOON, step="1 hour"), "cu-other")
        for b in planned["batches"]:
            catchup.stage_batch(factory(dsn), planned["plan"], b)
        # An operator hands the tables over while the catchup waits to publish; the owner loads its day.
        conn.execute("DELETE FROM tidemark.hypertable_owners WHERE dataset = %s", (other.name,))
        load_through_library(dsn, request(registered_dataset), "own-1")
        before = rows_in(conn, registered_dataset, DAY, DAY + timedelta(days=1))
        with pytest.raises(owners.NotOwner, match=f"owned by dataset {registered_dataset.name!r}"):
            catchup.publish(factory(dsn), planned["plan"])
        assert rows_in(conn, registered_dataset, DAY, DAY + timedelta(days=1)) == before
        assert cursors.position(conn, other.name) == SIX
        assert ledger_rows(conn, other) == 0
        assert conn.execute("SELECT state FROM tidemark.runs WHERE run_id = 'cu-other'").fetchone()[0] == "failed"
        with pytest.raises(owners.NotOwner):  # and a new catchup is refused at plan
            catchup.plan_catchup(factory(dsn), request(other, SIX, NOON, step="1 hour"), "cu-other-2")


def test_live_refuses_a_table_another_dataset_owns(dsn: str, conn: psycopg.Connection, loaded: Dataset) -> None:
    before = rows_in(conn, loaded, DAY, DAY + timedelta(days=1))
    with intruder(loaded) as other:
        with pytest.raises(owners.NotOwner, match=f"owned by dataset {loaded.name!r}"):
            live.decide(factory(dsn), other.name, tip=NOON, unit="5 minutes", threshold="1 hour",
                        catchup_batch_interval="15 minutes")
        cursors.initialise(conn, other.name, SIX, by="test")  # a cursor from before: ingest checks on its own
        with pytest.raises(owners.NotOwner, match=f"owned by dataset {loaded.name!r}"):
            live.ingest(factory(dsn), other.name, tip=SIX + timedelta(minutes=20), unit="5 minutes", max_units=4,
                        run_id="live-other")
        assert cursors.position(conn, other.name) == SIX
        assert ledger_rows(conn, other) == 0
    assert rows_in(conn, loaded, DAY, DAY + timedelta(days=1)) == before


def test_the_owner_runs_again_through_every_flow(dsn: str, conn: psycopg.Connection, loaded: Dataset) -> None:
    again = backfill.plan_run(factory(dsn), request(loaded), "own-2", alive=lambda run_id: False)  # own-1 ended
    assert again["batches"] == []
    backfill.finalize(factory(dsn), again["plan"], {}, {})
    later = DAY + timedelta(days=1)
    cursors.initialise(conn, loaded.name, later, by="test")
    decision = live.decide(factory(dsn), loaded.name, tip=later + timedelta(minutes=12), unit="5 minutes",
                           threshold="1 hour", catchup_batch_interval="15 minutes")
    assert decision.action == "ingest"
    out = live.ingest(factory(dsn), loaded.name, tip=later + timedelta(minutes=12), unit="5 minutes", max_units=5,
                      run_id="own-live")
    assert len(out["units"]) == 2
    assert owned(dsn, loaded) == [(loaded.name, "own-1")] * 3  # the first claim stands


def test_not_owner_fails_the_airflow_task_without_retries() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from tidemark.airflow import tasks

    @tasks.fail_fast
    def plan() -> None:
        raise owners.NotOwner("b", [owners.Owner("s", "t", "a", DAY, "run-a")])

    with pytest.raises(AirflowFailException, match="s.t is owned by dataset 'a'"):
        plan()
