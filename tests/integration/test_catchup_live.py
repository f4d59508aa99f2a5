"""Catchup (stage in parallel, publish atomically) and live ingestion, driven by plain Python."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from tests.conftest import EmbeddedEngine, registered, unique_dataset
from tidemark.flows import backfill, catchup, live
from tidemark.state import cursors
from tidemark.connection import connect, factory
from tidemark.model.dataset import Dataset
from tidemark.flows.verify import checksum, source_counts

UTC = timezone.utc
START = datetime(2024, 6, 1, tzinfo=UTC)
END = START + timedelta(hours=6)


def request(ds: Dataset, start: datetime = START, end: datetime = END, step: str = "1 hour") -> backfill.BackfillRequest:
    return backfill.BackfillRequest.from_params(
        {"dataset": ds.name, "start": start.isoformat(), "end": end.isoformat(), "batch_interval": step}
    )


def visible(conn: psycopg.Connection, ds: Dataset) -> int:
    return sum(n for n, _ in checksum(conn, ds, START - timedelta(days=1), END + timedelta(days=1)).values())


def stage_all(dsn: str, ds: Dataset, run_id: str, skip: set[int] = frozenset()) -> tuple[dict, list]:
    planned = catchup.plan_catchup(factory(dsn), request(ds), run_id)
    for b in planned["batches"]:
        if b["index"] not in skip:
            catchup.stage_batch(factory(dsn), planned["plan"], b)
    return planned["plan"], planned["batches"]


def staging_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,)).fetchone()[0]


def test_catchup_publishes_everything_at_once_and_matches_a_backfill(
    dsn: str, conn: psycopg.Connection, registered_dataset: Dataset
) -> None:
    summary, batches = stage_all(dsn, registered_dataset, "cu-1")
    assert len(batches) == 6
    assert visible(conn, registered_dataset) == 0, "staged rows must not be visible before the publish"
    assert cursors.position(conn, registered_dataset.name) == START
    result = catchup.publish(factory(dsn), summary)
    expected = source_counts(registered_dataset, START, END)
    assert result["published"] == expected
    assert cursors.position(conn, registered_dataset.name) == END
    assert not staging_exists(conn, summary["staging"])
    assert conn.execute("SELECT count(*) FROM tidemark.staging_manifest WHERE staging = %s",
                        (summary["staging"],)).fetchone()[0] == 0
    # The same range through the backfill path leaves identical rows.
    with registered(unique_dataset(conn)) as other:
        planned = backfill.plan_run(factory(dsn), request(other), "bf-same")
        for b in planned["batches"]:
            backfill.insert_batch(factory(dsn), planned["plan"], b)
    assert checksum(conn, other, START, END) == checksum(conn, registered_dataset, START, END)


def test_failed_batch_publishes_nothing_until_it_is_rerun(dsn: str, conn: psycopg.Connection, registered_dataset: Dataset) -> None:
    summary, batches = stage_all(dsn, registered_dataset, "cu-2", skip={3})
    with pytest.raises(catchup.StagingIncomplete, match=r"lacks batches \[3\]"):
        catchup.publish(factory(dsn), summary)
    assert visible(conn, registered_dataset) == 0
    assert cursors.position(conn, registered_dataset.name) == START
    # A rerun (cleared task, or a new run with the same params) stages only what is missing.
    again = catchup.plan_catchup(factory(dsn), request(registered_dataset), "cu-2b")
    assert again["plan"]["staging"] == summary["staging"]
    assert again["plan"]["already_staged"] == [0, 1, 2, 4, 5]
    catchup.stage_batch(factory(dsn), again["plan"], batches[3])
    catchup.publish(factory(dsn), again["plan"])
    assert checksum(conn, registered_dataset, START, END) == {
        t: (n, checksum(conn, registered_dataset, START, END)[t][1]) for t, n in source_counts(registered_dataset, START, END).items()
    }
    assert cursors.position(conn, registered_dataset.name) == END


def test_publish_aborts_when_the_cursor_moved(dsn: str, conn: psycopg.Connection, registered_dataset: Dataset) -> None:
    summary, batches = stage_all(dsn, registered_dataset, "cu-3")
    assert cursors.compare_and_swap(conn, registered_dataset.name, START, START + timedelta(minutes=5), by="someone else")
    with pytest.raises(catchup.CursorMoved, match="nothing written"):
        catchup.publish(factory(dsn), summary)
    assert visible(conn, registered_dataset) == 0
    assert cursors.position(conn, registered_dataset.name) == START + timedelta(minutes=5)
    assert staging_exists(conn, summary["staging"])


def test_catchup_must_start_at_the_cursor(dsn: str, conn: psycopg.Connection, registered_dataset: Dataset) -> None:
    cursors.initialise(conn, registered_dataset.name, START, by="test")
    with pytest.raises(catchup.CursorMoved, match="must start at the cursor"):
        catchup.plan_catchup(factory(dsn), request(registered_dataset, START + timedelta(hours=1), END), "cu-4")


@pytest.mark.parametrize("kill_at", ["catchup.publish.before_commit", "catchup.publish.after_commit"])
def test_engine_killed_during_publish_is_all_or_nothing(
    private_engine: EmbeddedEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill_at: str
) -> None:
    private_engine.start()
    dsn = private_engine.dsn
    with connect(dsn) as conn:
        ds = unique_dataset(conn)
    with registered(ds):
        summary, batches = stage_all(dsn, ds, "cu-kill")
        marker = tmp_path / "paused"
        monkeypatch.setenv("TIDEMARK_FAULTS", f"{kill_at}@*")
        monkeypatch.setenv("TIDEMARK_FAULT_MARKER", str(marker))
        monkeypatch.setenv("TIDEMARK_FAULT_PAUSE", "20")
        errors: list[BaseException] = []

        def run() -> None:
            try:
                catchup.publish(factory(dsn), summary)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        publisher = threading.Thread(target=run)
        publisher.start()
        for _ in range(300):
            if marker.exists():
                break
            time.sleep(0.05)
        assert marker.exists(), "publish never reached the kill point"
        private_engine.kill9()
        publisher.join(60)
        monkeypatch.delenv("TIDEMARK_FAULTS")
        private_engine.start()
        with connect(dsn) as conn:
            position = cursors.position(conn, ds.name)
            rows = checksum(conn, ds, START, END)
            expected = source_counts(ds, START, END)
            if kill_at.endswith("before_commit"):
                assert position == START and all(n == 0 for n, _ in rows.values())
                # Unlogged staging did not survive the crash: publish refuses and names the batches.
                with pytest.raises(catchup.StagingIncomplete, match=r"lacks batches \[0, 1, 2, 3, 4, 5\]"):
                    catchup.publish(factory(dsn), summary)
            else:
                assert position == END and {t: n for t, (n, _) in rows.items()} == expected


def test_live_below_threshold_ingests_unit_by_unit(dsn: str, conn: psycopg.Connection, registered_dataset: Dataset) -> None:
    cursors.initialise(conn, registered_dataset.name, START, by="test")
    tip = START + timedelta(minutes=23)
    decision = live.decide(factory(dsn), registered_dataset.name, tip=tip, unit="5 minutes", threshold="1 hour",
                           catchup_batch_interval="15 minutes")
    assert decision.action == "ingest"
    out = live.ingest(factory(dsn), registered_dataset.name, tip=tip, unit="5 minutes", max_units=3, run_id="live-1")
    assert [u["start"] for u in out["units"]] == [(START + timedelta(minutes=5 * i)).isoformat() for i in range(3)]
    assert cursors.position(conn, registered_dataset.name) == START + timedelta(minutes=15)
    out = live.ingest(factory(dsn), registered_dataset.name, tip=tip, unit="5 minutes", max_units=10, run_id="live-2")
    assert len(out["units"]) == 1  # only complete units: 20 min, not 23
    assert cursors.position(conn, registered_dataset.name) == START + timedelta(minutes=20)
    expected = source_counts(registered_dataset, START, START + timedelta(minutes=20))
    assert {t: n for t, (n, _) in checksum(conn, registered_dataset, START, END).items()} == expected
    for u in out["units"]:
        s, e = datetime.fromisoformat(u["start"]), datetime.fromisoformat(u["end"])
        assert u["rows"] == source_counts(registered_dataset, s, e)


def test_live_above_threshold_hands_over_and_writes_nothing(dsn: str, conn: psycopg.Connection, registered_dataset: Dataset) -> None:
    cursors.initialise(conn, registered_dataset.name, START, by="test")
    tip = START + timedelta(hours=2, minutes=7)
    decision = live.decide(factory(dsn), registered_dataset.name, tip=tip, unit="5 minutes", threshold="1 hour",
                           catchup_batch_interval="15 minutes")
    assert decision.action == "catchup"
    assert decision.catchup_conf == {"dataset": registered_dataset.name, "start": START.isoformat(),
                                     "end": (START + timedelta(hours=2, minutes=5)).isoformat(),
                                     "batch_interval": "15 minutes"}
    assert visible(conn, registered_dataset) == 0 and cursors.position(conn, registered_dataset.name) == START
    states = {decision.catchup_run_id: "running"}
    waiting = live.decide(factory(dsn), registered_dataset.name, tip=tip, unit="5 minutes", threshold="1 hour",
                          catchup_batch_interval="15 minutes", catchup_state=states.get)
    assert waiting.action == "wait" and "waits" in waiting.reason
    states[decision.catchup_run_id] = "failed"
    stuck = live.decide(factory(dsn), registered_dataset.name, tip=tip, unit="5 minutes", threshold="1 hour",
                        catchup_batch_interval="15 minutes", catchup_state=states.get)
    assert stuck.action == "wait" and "failed" in stuck.reason
