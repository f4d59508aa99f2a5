"""Live ingestion: keep a dataset current, one unit per transaction, or hand over to catchup.

Each unit of new data (a few minutes) commits durably together with the
cursor move, so the cursor never claims data that is not there and never
advances past a unit that failed. When live has fallen behind by more than a
threshold, sequential units would never catch up: live then hands the lag
``[cursor, tip)`` to a parallel catchup and does nothing (but say it waits)
until that catchup has published. Live never compresses: recent chunks belong
to the hypertables' compression policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tidemark.state import cursors, ledger, owners
from tidemark.declare import catalog
from tidemark.connection import ConnectionFactory
from tidemark.model.dataset import Dataset
from tidemark.errors import InvalidInput, TidemarkError
from tidemark.sources import base as sources
from tidemark.load.loader import replace_window, row_counts, staged_window
from tidemark.model.batch import Batch
from tidemark.state.runs import STALE_AFTER
from tidemark.timescale.schema import ensure_bookkeeping, ensure_schema, resolve
from tidemark.model.timeparse import format_interval, parse_interval

log = logging.getLogger(__name__)


class CursorConflict(TidemarkError):
    """The cursor moved under live ingestion (a catchup published, or another writer)."""


@dataclass(frozen=True)
class Decision:
    action: str  # ingest | catchup | wait | idle
    dataset: str
    cursor: datetime
    tip: datetime
    reason: str
    catchup_conf: dict[str, Any] | None = None
    catchup_run_id: str | None = None

    @property
    def lag(self) -> timedelta:
        return self.tip - self.cursor

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "dataset": self.dataset,
            "cursor": self.cursor.isoformat(),
            "tip": self.tip.isoformat(),
            "lag_seconds": self.lag.total_seconds(),
            "reason": self.reason,
            "catchup_conf": self.catchup_conf,
            "catchup_run_id": self.catchup_run_id,
        }


def catchup_run_id(dataset: str, cursor: datetime) -> str:
    """Deterministic, so live re-checks (and never re-triggers) the catchup for the same cursor."""
    return f"catchup__{dataset}__{cursor.strftime('%Y%m%dT%H%M%S')}"


def decide(
    connect: ConnectionFactory,
    dataset: str,
    *,
    tip: datetime | None,
    unit: str | timedelta,
    threshold: str | timedelta,
    catchup_batch_interval: str,
    catchup_state: Callable[[str], str | None] = lambda run_id: None,
) -> Decision:
    """Where live stands and what to do next.

    ``catchup_state`` tells the Airflow state of a catchup run by run id (None
    if there is none): live asks about the run it would trigger for the
    current cursor, so it never triggers twice nor skips past a failed one.
    ``tip`` None means: ask the dataset's sources how far their data reaches.
    """
    ds = catalog.get(dataset)
    unit_td = parse_interval(unit)
    threshold_td = parse_interval(threshold)
    if threshold_td < unit_td:
        raise InvalidInput(f"lag threshold {format_interval(threshold_td)} must be at least one unit ({format_interval(unit_td)})")
    with connect() as conn:
        ensure_bookkeeping(conn)  # the owner table, so the claim comes before any of the dataset's tables
        owners.claim(conn, ds.name, ds.tables, "tidemark_live")  # decide has no run id: the name its cursor uses
        ds = ensure_schema(conn, ds)
        if tip is None:
            tip = source_tip(ds)
        cursor = cursors.position(conn, ds.name)
        if cursor is None:
            start = _floor(tip, unit_td)
            cursor = cursors.initialise(conn, ds.name, start, by="tidemark_live")
            log.info("dataset %s had no live cursor; starting it at %s", ds.name, cursor.isoformat())
        running = conn.execute(
            "SELECT run_id FROM tidemark.runs WHERE dataset = %s AND kind = 'catchup' AND state = 'running'"
            " AND updated_at > clock_timestamp() - %s::interval",
            (ds.name, STALE_AFTER),
        ).fetchone()
    lag = tip - cursor
    units = int(lag // unit_td) if lag > timedelta(0) else 0
    run_id = catchup_run_id(ds.name, cursor)
    state = catchup_state(run_id)
    if running or state in ("queued", "running"):
        who = running[0] if running else run_id
        return Decision("wait", ds.name, cursor, tip, f"catchup {who} is loading the lag; live waits for its publish")
    if state == "failed":
        return Decision(
            "wait", ds.name, cursor, tip,
            f"catchup run {run_id} failed; live will not skip past it: clear its failed tasks to finish it",
        )
    if lag >= threshold_td and units > 0:
        end = cursor + units * unit_td
        conf = {"dataset": ds.name, "start": cursor.isoformat(), "end": end.isoformat(),
                "batch_interval": catchup_batch_interval}
        return Decision(
            "catchup", ds.name, cursor, tip,
            f"lag {format_interval(lag)} >= threshold {format_interval(threshold_td)}: handing [{cursor.isoformat()}, "
            f"{end.isoformat()}) to tidemark_catchup",
            conf, run_id,
        )
    if units == 0:
        return Decision("idle", ds.name, cursor, tip, f"lag {format_interval(lag) if lag > timedelta(0) else '0'}: no complete unit yet")
    return Decision("ingest", ds.name, cursor, tip, f"lag {format_interval(lag)}: ingesting {units} unit(s)")


def source_tip(ds: Dataset) -> datetime:
    """How far the dataset's data reaches: the least advanced of its sources' tips."""
    tips = []
    for source, tables in ds.feeds():
        t = sources.tip(source, tables)
        if t is None:
            raise InvalidInput(
                f"dataset {ds.name!r}: its source ({sources.describe(source)}) cannot tell how far its data reaches "
                "(sql: add tip_query or make the query work over any window; python: add tip); or pass the tip param"
            )
        tips.append(t)
    return min(tips)


def _floor(t: datetime, unit: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=t.tzinfo)
    return epoch + ((t - epoch) // unit) * unit


def ingest(
    connect: ConnectionFactory,
    dataset: str,
    *,
    tip: datetime,
    unit: str | timedelta,
    max_units: int,
    run_id: str,
) -> dict[str, Any]:
    """Ingest complete units after the cursor, each in its own durable transaction with the cursor move."""
    ds = catalog.get(dataset)
    unit_td = parse_interval(unit)
    done: list[dict[str, Any]] = []
    with connect() as conn:
        ds = resolve(conn, ds)
        owners.claim(conn, ds.name, ds.tables, run_id)  # refused before reading the source, not at the first unit
        cursor = cursors.position(conn, ds.name)
        if cursor is None:
            raise CursorConflict(f"dataset {ds.name!r} has no live cursor; run the decide step first")
        for _ in range(max_units):
            if cursor + unit_td > tip:
                break
            batch = Batch(len(done), cursor, cursor + unit_td)
            with staged_window(ds, batch) as staged:  # read before the transaction opens
                with conn.transaction():  # synchronous_commit stays on: live units are durable one by one
                    owners.check(conn, ds.name, ds.tables, run_id)
                    replace_window(conn, ds, batch, staged)
                    ledger.record(conn, ds.name, batch.start, batch.end, row_counts(staged), run_id)
                    if not cursors.compare_and_swap(conn, ds.name, batch.start, batch.end, by=run_id):
                        raise CursorConflict(
                            f"dataset {ds.name!r}: cursor is no longer at {batch.start.isoformat()} (a catchup "
                            "published or another writer moved it); this unit was rolled back"
                        )
                counts = row_counts(staged)
            done.append({"start": batch.start.isoformat(), "end": batch.end.isoformat(), "rows": counts})
            log.info("live %s: ingested [%s, %s) %s", ds.name, batch.start.isoformat(), batch.end.isoformat(), counts)
            cursor = batch.end
    return {"dataset": ds.name, "units": done, "cursor": cursor.isoformat()}
