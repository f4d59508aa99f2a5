"""The per-poke history behind the tab's plot stays bounded and goes away with its run (real engine)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from tidemark.state import history, progress, runs
from tidemark.connection import connect
from tidemark.timescale.schema import ensure_bookkeeping

from tests.conftest import EmbeddedEngine

START = datetime(2024, 7, 1, tzinfo=UTC)


def _run(conn: psycopg.Connection) -> str:
    ensure_bookkeeping(conn)
    key = f"test/{uuid.uuid4().hex[:10]}"
    runs.claim(conn, key, f"ds_{uuid.uuid4().hex[:6]}", "backfill", START, START + timedelta(days=1), 24)
    return key


def _poke(conn: psycopg.Connection, key: str, i: int, cap: int) -> None:
    progress.record_poke(conn, key, watermark_batches=i, watermark_time=START + timedelta(hours=i), backlog_chunks=i,
                         backlog_bytes=1000 * i, remaining_chunks=0, remaining_bytes=0, cap=cap)


def _history(conn: psycopg.Connection, key: str) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT watermark_batches FROM tidemark.poke_history WHERE run_id = %s ORDER BY at", (key,)).fetchall()]


def test_history_is_thinned_to_the_cap_keeping_first_and_latest(conn: psycopg.Connection) -> None:
    key = _run(conn)
    for i in range(40):
        _poke(conn, key, i, cap=8)
        assert len(_history(conn, key)) <= 8
    kept = _history(conn, key)
    assert kept[0] == 0 and kept[-1] == 39 and kept == sorted(kept)
    view = progress.run_view(conn, key)
    assert view is not None and [h["watermark_batches"] for h in view["history"]] == kept


def test_history_of_old_finished_runs_is_pruned_and_goes_with_the_run(conn: psycopg.Connection) -> None:
    old, other, deleted = _run(conn), _run(conn), _run(conn)
    for key in (old, other, deleted):
        _poke(conn, key, 1, cap=progress.HISTORY_CAP)
    conn.execute("UPDATE tidemark.runs SET state = 'succeeded', finished_at = clock_timestamp() - interval '15 days'"
                 " WHERE run_id = %s", (old,))
    _poke(conn, other, 2, cap=progress.HISTORY_CAP)  # any run's poke prunes
    assert _history(conn, old) == [] and _history(conn, other) == [1, 2]
    conn.execute("DELETE FROM tidemark.runs WHERE run_id = %s", (deleted,))
    assert _history(conn, deleted) == []


def test_a_database_without_bookkeeping_shows_nothing_rather_than_failing(private_engine: EmbeddedEngine) -> None:
    private_engine.start()
    with connect(private_engine.dsn) as c:
        assert history.recent_runs(c) == []
        assert progress.run_view(c, "tidemark_backfill/none") is None
        assert progress.live_view(c, "ledgers", tip=START, threshold=timedelta(hours=1))["cursor"] is None
        # A run planned before an upgrade added the history table: its pokes go on without history.
        key = _run(c)
        # A layout from before attempts, failures and stored bytes: the pages fall back, the next plan migrates.
        c.execute("ALTER TABLE tidemark.runs DROP COLUMN attempt")
        c.execute("ALTER TABLE tidemark.poke_history DROP COLUMN stored_bytes, DROP COLUMN source")
        c.execute("DROP TABLE tidemark.runs_history, tidemark.batch_failures")
        _poke(c, key, 1, cap=progress.HISTORY_CAP)
        old = progress.run_view(c, key)
        assert old is not None and old["attempt"] == 1 and old["history"] == [] and old["earlier_attempts"] == []
        assert [r["run_id"] for r in history.recent_runs(c)] == [key] and history.datasets_with_runs(c)
        ensure_bookkeeping(c)
        ensure_bookkeeping(c)  # idempotent
        _poke(c, key, 2, cap=progress.HISTORY_CAP)
        new = progress.run_view(c, key)
        assert new is not None and new["attempt"] == 1 and [h["watermark_batches"] for h in new["history"]] == [2]
        assert [r["attempt"] for r in history.recent_runs(c)] == [1]
        c.execute("DROP TABLE tidemark.poke_history CASCADE")
        _poke(c, key, 3, cap=progress.HISTORY_CAP)
        assert progress.run_view(c, key) is not None


def test_pokes_within_one_clock_tick_never_fail(conn: psycopg.Connection) -> None:
    key = _run(conn)
    for i in range(60):  # the embedded engine's clock ticks in milliseconds: some of these collide
        _poke(conn, key, i, cap=progress.HISTORY_CAP)
    kept = _history(conn, key)
    assert 0 < len(kept) <= 60 and kept == sorted(kept)
