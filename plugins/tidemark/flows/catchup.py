"""Catchup: load a lag in parallel into staging, then publish it in ONE transaction.

Live ingestion that fell behind must not expose a half-loaded lag: readers see
either none of it or all of it, and the live cursor moves in the same
transaction as the rows. Batches therefore load into per-catchup UNLOGGED
staging tables (fast, invisible to readers), each recording itself in a
staging manifest; the publish verifies staging against the plan and the
manifest, moves everything into the hypertables, records the ledger and
advances the cursor by compare-and-swap, all in one synchronous commit.

Staging is keyed by the catchup's range and batch interval, not by the
Airflow run: clearing a failed batch, or triggering a new run with the same
params, reuses what is already staged and reloads only what is missing. After
an engine crash UNLOGGED staging is emptied, and the publish refuses, naming
the batches to rerun; it never publishes a partial catchup.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from tidemark.state import cursors, ledger, owners, runs
from tidemark.declare import catalog
from tidemark import faults
from tidemark.timescale import policies
from tidemark.flows.request import BackfillRequest
from tidemark.model.payloads import BatchResultPayload, Planned
from tidemark.model.run_plan import CATCHUP, RunPlan
from tidemark.sources import base as sources
from tidemark.connection import ConnectionFactory, one
from tidemark.model.dataset import Dataset, Hypertable
from tidemark.errors import TidemarkError
from tidemark.load.loader import Staged, load_batch, replace_window, row_counts
from tidemark.model.batch import Batch
from tidemark.flows.plan import plan_batches
from tidemark.timescale.schema import ensure_bookkeeping, ensure_schema, resolve, table_ident
from tidemark.model.timeparse import format_interval
from tidemark.flows.verify import window_counts

log = logging.getLogger(__name__)

class CursorMoved(TidemarkError):
    """The live cursor is not where the catchup started: someone else moved it."""


class StagingIncomplete(TidemarkError):
    """Staging does not hold every planned batch: publishing would expose a partial catchup."""


def staging_schema(dataset: str, start: datetime, end: datetime, interval: str) -> str:
    key = f"{dataset}|{start.isoformat()}|{end.isoformat()}|{interval}"
    return "tidemark_stage_" + hashlib.sha1(key.encode()).hexdigest()[:16]


def _staged(schema: str, table: Hypertable) -> sql.Identifier:
    return sql.Identifier(schema, table.name)


def _ensure_staging(conn: psycopg.Connection, ds: Dataset, schema: str) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for table in ds.tables:
            conn.execute(
                sql.SQL("CREATE UNLOGGED TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS)").format(
                    _staged(schema, table), table_ident(table)
                )
            )


def plan_catchup(
    connect: ConnectionFactory,
    request: BackfillRequest,
    run_id: str,
    alive: Callable[[str], bool] = lambda run_id: True,
) -> Planned:
    """Validate, initialise the cursor at ``start`` if the dataset has none, claim, create staging.

    Refuses a range that does not start at the dataset's live cursor: the
    publish could never succeed, so it is better said before loading anything.
    """
    ds = catalog.get(request.dataset)
    planned = plan_batches(request.start, request.end, request.batch_interval)
    sources.check_before_load(ds, request.start, request.end)  # before the first write, as a backfill's plan
    schema = staging_schema(ds.name, request.start, request.end, format_interval(request.batch_interval))
    with connect() as conn:
        ensure_bookkeeping(conn)  # the owner table, so the claim comes before any of the dataset's tables
        owners.claim(conn, ds.name, ds.tables, run_id)
        ds = ensure_schema(conn, ds)
        position = cursors.initialise(conn, ds.name, request.start, by=run_id)
        if position != request.start:
            raise CursorMoved(
                f"dataset {ds.name!r}: the live cursor is at {position.isoformat()}, but this catchup starts at "
                f"{request.start.isoformat()}; a catchup must start at the cursor (set start to it)"
            )
        runs.claim(conn, run_id, ds.name, CATCHUP, request.start, request.end, len(planned.batches), alive)
        _ensure_staging(conn, ds, schema)
        staged = {
            r[0] for r in conn.execute(
                "SELECT batch_index FROM tidemark.staging_manifest WHERE staging = %s", (schema,)
            ).fetchall()
        }
    plan = RunPlan(
        run_id=run_id, dataset=ds.name, kind=CATCHUP, start=request.start, end=request.end,
        batch_interval=request.batch_interval, batches=planned.batches, staging=schema,
        already_staged=tuple(sorted(staged)),
    )
    log.info("catchup %s: %d batches into staging %s (%d already staged)",
             plan.describe(), len(plan.batches), schema, len(staged))
    return {"plan": plan.to_payload(), "batches": plan.batch_payloads()}


def _staging_of(plan: RunPlan) -> str:
    if plan.staging is None:
        raise StagingIncomplete(f"run {plan.run_id}: its plan names no staging schema (not a catchup's plan)")
    return plan.staging


def stage_batch(
    connect: ConnectionFactory, plan: RunPlan | Mapping[str, Any], batch: Batch | Mapping[str, Any]
) -> BatchResultPayload:
    """Load one batch into staging and the manifest, in one (asynchronous) transaction."""
    run = RunPlan.of(plan)
    ds = catalog.get(run.dataset)
    schema = _staging_of(run)

    def write(conn: psycopg.Connection, dataset: Dataset, b: Batch, payloads: Staged, _: str) -> None:
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            replace_window(conn, dataset, b, payloads, target=lambda t: _staged(schema, t))
            faults.check("stage_batch.before_commit", b.index)
            conn.execute(
                "INSERT INTO tidemark.staging_manifest (staging, batch_index, window_start, window_end, row_counts)"
                " VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (staging, batch_index) DO UPDATE SET"
                " window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,"
                " row_counts = EXCLUDED.row_counts, staged_at = clock_timestamp()",
                (schema, b.index, b.start, b.end, json.dumps(row_counts(payloads), sort_keys=True)),
            )

    result = load_batch(connect, ds, run.batch_of(batch), run.run_id, writer=write)
    log.info("staged batch %d: %d rows in %.2fs", result.index, result.total_rows, result.seconds)
    return {
        "index": result.index, "start": result.start.isoformat(), "end": result.end.isoformat(),
        "rows": dict(result.rows), "seconds": result.seconds, "generate_seconds": result.generate_seconds,
        "db_seconds": result.db_seconds, "attempts": result.attempts,
    }


def missing_batches(conn: psycopg.Connection, ds: Dataset, schema: str, plan: Sequence[Batch]) -> list[int]:
    """Planned batches not fully in staging: no manifest entry, another window, or rows lost."""
    manifest = {
        r[0]: (r[1], r[2], dict(r[3]))
        for r in conn.execute(
            "SELECT batch_index, window_start, window_end, row_counts FROM tidemark.staging_manifest WHERE staging = %s",
            (schema,),
        ).fetchall()
    }
    staged_ok = one(conn.execute(
        "SELECT count(*) = %s FROM pg_catalog.pg_tables WHERE schemaname = %s", (len(ds.tables), schema)
    ))[0]
    if not staged_ok:
        return [b.index for b in plan]
    counts = _staged_counts(conn, ds, schema, [(b.start, b.end) for b in plan])
    missing = []
    for b, have in zip(plan, counts):
        entry = manifest.get(b.index)
        if entry is None or entry[0] != b.start or entry[1] != b.end or entry[2] != have:
            missing.append(b.index)
    return missing


def _staged_counts(
    conn: psycopg.Connection, ds: Dataset, schema: str, windows: Sequence[tuple[datetime, datetime]]
) -> list[dict[str, int]]:
    staged = ds.with_tables([replace(t, schema=schema) for t in ds.tables])
    return window_counts(conn, staged, windows)


def publish(
    connect: ConnectionFactory,
    plan: RunPlan | Mapping[str, Any],
    states: Mapping[int, str | None] | None = None,
) -> dict[str, Any]:
    """Move the whole staged lag into the hypertables and advance the cursor, in ONE transaction.

    Publishes only when every batch task succeeded (``states``, when given)
    and staging verifies; otherwise it writes nothing, releases the run's claim
    (state failed) and keeps staging for the rerun.
    """
    run = RunPlan.of(plan)
    try:
        if states is not None:
            failed = sorted(i for i in range(len(run.batches)) if states.get(i) != "success")
            if failed:
                raise StagingIncomplete(
                    f"nothing published: batches {failed} did not succeed; the hypertables and the cursor are "
                    "untouched. Clear the failed task instances (only they reload, then publish runs), or trigger "
                    "a new catchup with the same params (staged batches are reused)"
                )
        return _publish(connect, run)
    except (CursorMoved, StagingIncomplete, owners.NotOwner):
        with connect() as conn:
            runs.finish(conn, run.run_id, "failed")
        raise


def _publish(connect: ConnectionFactory, run: RunPlan) -> dict[str, Any]:
    ds = catalog.get(run.dataset)
    schema = _staging_of(run)
    plan = run.batches
    start, end, run_id = run.start, run.end, run.run_id
    with connect() as conn:
        ds = resolve(conn, ds)
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = on")
            row = conn.execute(
                "SELECT position FROM tidemark.cursors WHERE dataset = %s FOR UPDATE", (ds.name,)
            ).fetchone()
            position = row[0] if row else None
            if position != start:
                raise CursorMoved(
                    f"publish aborted, nothing written: dataset {ds.name!r} cursor is at "
                    f"{position.isoformat() if position else 'nowhere'}, expected {start.isoformat()} "
                    "(someone else moved it since this catchup was planned); staging is kept"
                )
            owners.check(conn, ds.name, ds.tables, run_id)  # another dataset may have claimed since the plan
            missing = missing_batches(conn, ds, schema, plan)
            if missing:
                raise StagingIncomplete(
                    f"publish refused, nothing written: staging {schema} lacks batches {missing} "
                    "(failed, never ran, or lost in an engine restart); rerun them (clear those task "
                    "instances, or trigger a new catchup with the same params), then publish again"
                )
            published: dict[str, int] = {}
            for table in ds.tables:
                time_col = sql.Identifier(table.time_column)
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} >= %s AND {} < %s").format(table_ident(table), time_col, time_col),
                    (start, end),
                )
                cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
                cur = conn.execute(
                    sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {} >= %s AND {} < %s ORDER BY {}").format(
                        table_ident(table), cols, cols, _staged(schema, table), time_col, time_col, time_col
                    ),
                    (start, end),
                )
                published[table.name] = cur.rowcount
            manifest = {
                r[0]: dict(r[1])
                for r in conn.execute(
                    "SELECT batch_index, row_counts FROM tidemark.staging_manifest WHERE staging = %s", (schema,)
                ).fetchall()
            }
            for b in plan:
                ledger.record(conn, ds.name, b.start, b.end, manifest[b.index], run_id)
            faults.pause("catchup.publish.before_commit")
            if not cursors.compare_and_swap(conn, ds.name, start, end, by=run_id):
                raise CursorMoved("publish aborted: the cursor moved during the publish")  # FOR UPDATE makes this unreachable
        faults.pause("catchup.publish.after_commit")
        faults.check("catchup.publish.after_commit")
        drop_staging(conn, schema)
        # Readers of continuous aggregates over these tables see the lag too, not only readers of the tables.
        refreshed = [r["view"] for r in policies.refresh_continuous_aggregates(conn, ds, start, end)]
        runs.finish(conn, run_id, "succeeded", {"published": published, "cursor": end.isoformat(),
                                                "continuous_aggregates_refreshed": refreshed})
    log.info("published %s [%s, %s): %s; cursor now %s", ds.name, start.isoformat(), end.isoformat(), published,
             end.isoformat())
    return {"published": published, "rows": sum(published.values()), "cursor": end.isoformat(), "staging_dropped": schema,
            "continuous_aggregates_refreshed": refreshed}


def drop_staging(conn: psycopg.Connection, schema: str) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute("DELETE FROM tidemark.staging_manifest WHERE staging = %s", (schema,))
