"""The backfill run, step by step, as plain functions the DAG's tasks call: plan, load a batch, finalize.

Each step takes a connection factory and the run's plan (``RunPlan``, or the
JSON payload XCom carries), so the whole flow is testable without Airflow
and the DAG stays wiring. The sensor's step, progressive compression, is in
``tidemark.flows.progressive``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import psycopg

from tidemark.connection import ConnectionFactory, one
from tidemark.declare import catalog
from tidemark.errors import TidemarkError
from tidemark.flows import progressive
from tidemark.flows.plan import plan_batches
from tidemark.flows.report import build_report
from tidemark.flows.request import BackfillRequest
from tidemark.flows.verify import Verification, verify
from tidemark.load.loader import BatchResult, load_batch
from tidemark.model.batch import Batch
from tidemark.model.dataset import Dataset
from tidemark.model.payloads import BatchResultPayload, Planned, ReloadedWindow, Report
from tidemark.model.run_plan import BACKFILL, RunPlan
from tidemark.sources import base as sources
from tidemark.state import cursors, ledger, owners, runs
from tidemark.timescale import columnstore, compressor, policies
from tidemark.timescale.schema import ensure_bookkeeping, ensure_schema

__all__ = ["RunFailed", "finalize", "insert_batch", "plan_run"]

log = logging.getLogger(__name__)


class RunFailed(TidemarkError):
    """The run cannot be declared complete; the message says how to resume."""


def _bookkeeping_exists(conn: psycopg.Connection) -> bool:
    return bool(one(conn.execute("SELECT to_regclass('tidemark.batch_ledger') IS NOT NULL"))[0])


def plan_run(
    connect: ConnectionFactory,
    request: BackfillRequest,
    run_id: str,
    alive: Callable[[str], bool] = lambda run_id: True,
) -> Planned:
    """Plan the batches still to load, claim the dataset's tables and the window, pause compression policies.

    Returns the plan's XCom payload and the batches the mapped task is
    expanded over (none in a dry run).
    """
    ds = catalog.get(request.dataset)
    sources.check_before_load(ds, request.start, request.end)  # a source that can never serve it fails here, once
    with connect() as conn:
        retention = policies.retention_horizons(conn, ds)
        policies.refuse_beyond_retention(retention, request.start, allowed=request.allow_older_than_retention)
        if request.dry_run:
            owners.refuse_others(conn, ds.name, ds.tables)
            loaded = ledger.loaded_windows(conn, ds.name, request.start, request.end) if _bookkeeping_exists(conn) else []
        else:
            ensure_bookkeeping(conn)  # the owner table, so the claim comes before any of the dataset's tables
            owners.claim(conn, ds.name, ds.tables, run_id)
            ds = ensure_schema(conn, ds)
            loaded = ledger.loaded_windows(conn, ds.name, request.start, request.end)
        direct = [] if request.dry_run else columnstore.resolve(conn, ds)
        planned = plan_batches(request.start, request.end, request.batch_interval, loaded=loaded)
        if not request.dry_run:
            runs.claim(conn, run_id, ds.name, BACKFILL, request.start, request.end, len(planned.batches), alive)
            policies.pause(conn, ds, run_id)
    plan = RunPlan(
        run_id=run_id, dataset=ds.name, start=request.start, end=request.end, batch_interval=request.batch_interval,
        batches=planned.batches, skipped=planned.skipped, dry_run=request.dry_run,
        retention=tuple(h.to_dict() for h in retention), direct_compress=tuple(direct),
        recompress_unordered=bool(direct) and _writes_per_chunk(ds, request.batch_interval)
        >= columnstore.RECOMPRESS_MIN_WRITES,
    )
    log.info(
        "plan %s: %d windows, %d already loaded, %d to load%s; %s",
        plan.describe(), plan.total_windows, len(plan.skipped), len(plan.batches), " (dry run)" if plan.dry_run else "",
        f"direct-to-columnstore COPY into {', '.join(direct)}" if direct else "classic COPY + progressive compression",
    )
    return {"plan": plan.to_payload(), "batches": plan.batch_payloads()}


def _writes_per_chunk(ds: Dataset, interval: timedelta) -> int:
    """How many batch windows write into one chunk at most (a window straddling a boundary counts twice)."""
    return max(-(-t.chunk_interval // interval) + (0 if t.chunk_interval % interval == timedelta(0) else 1)
               for t in ds.tables)


def insert_batch(
    connect: ConnectionFactory, plan: RunPlan | Mapping[str, Any], batch: Batch | Mapping[str, Any], *,
    compress: bool = True,
) -> BatchResultPayload:
    """Load the batch; if it extended the committed prefix, compress the chunks now lying behind it.

    Compressing here, in the batch that completes a chunk, keeps the backlog
    small without waiting for the sensor: under ``airflow dags test`` (one
    task at a time) the sensor may run only after every batch. ``compress=False``
    leaves all compression to others (the compress-at-end benchmark).
    """
    run = RunPlan.of(plan)
    b = run.batch_of(batch)
    ds = progressive.dataset_of(run)
    result = load_batch(connect, ds, b, run.run_id)
    c0 = time.perf_counter()
    compressed = progressive.compress_completed(connect, run, ds, b) if compress else 0
    log.info(
        "batch %d %s: %d rows (%s) in %.2fs (generate %.2fs, database %.2fs)%s",
        result.index, b.label, result.total_rows, result.rows, result.seconds,
        result.generate_seconds, result.db_seconds,
        f"; compressed {compressed} chunks behind the watermark in {time.perf_counter() - c0:.2f}s" if compressed else "",
    )
    return _result_payload(result)


def _result_payload(result: BatchResult) -> BatchResultPayload:
    return {
        "index": result.index, "start": result.start.isoformat(), "end": result.end.isoformat(),
        "rows": {str(k): int(v) for k, v in result.rows.items()}, "seconds": float(result.seconds),
        "generate_seconds": float(result.generate_seconds), "db_seconds": float(result.db_seconds),
        "attempts": int(result.attempts),
    }


def finalize(
    connect: ConnectionFactory,
    plan: RunPlan | Mapping[str, Any],
    states: Mapping[int, str | None],
    results: Mapping[int, BatchResultPayload | None],
    upstream_ok: bool = True,
) -> Report | None:
    """Make the load durable, verify it (reloading lost batches), compress the rest, report.

    Raises RunFailed when any batch or the sensor failed: a run whose final task
    succeeds must mean the window is loaded, verified and compressed. A dry
    run has nothing to finalize (its report is its plan): None.
    """
    run = RunPlan.of(plan)
    if run.dry_run:
        return None
    ds = progressive.dataset_of(run)
    failed = sorted(i for i in range(len(run.batches)) if states.get(i) != "success")
    with connect() as conn:
        if failed or not upstream_ok:
            policies.restore(conn, ds, run.run_id)
            runs.finish(conn, run.run_id, "failed")
            if failed:
                raise RunFailed(progressive.failure_message(run, failed))
            raise RunFailed(
                "the progressive compression task failed although every batch loaded; clear it (or trigger a new "
                "run with the same params) to compress the rest"
            )
        runs.heartbeat(conn, run.run_id)
        runs.make_durable(conn, run.run_id)
        check = verify(conn, ds, run.windows)
        reloaded = _repair(connect, ds, run.run_id, check)
        if reloaded:
            runs.make_durable(conn, run.run_id)
            check = verify(conn, ds, run.windows)
        if not check.ok:
            problems = [f"[{s.isoformat()}, {e.isoformat()}) missing from the ledger" for s, e in check.uncovered]
            problems += [m.describe() for m in check.mismatches]
            runs.finish(conn, run.run_id, "failed")
            policies.restore(conn, ds, run.run_id)
            raise RunFailed("verification failed after reloading: " + "; ".join(problems[:10]))
        horizon = cursors.position(conn, ds.name)
        final, left_for_live = compressor.final_pass(
            conn, ds, run.start, run.end, run_id=run.run_id, live_horizon=horizon,
            recompress_unordered=run.recompress_unordered,
        )
        bad = [r for r in final if not r.ok]
        if bad:
            runs.finish(conn, run.run_id, "failed")
            policies.restore(conn, ds, run.run_id)
            raise RunFailed(
                "final compression failed for " + ", ".join(f"{r.chunk.name} ({r.error})" for r in bad[:5])
                + "; clear finalize to retry (compression is idempotent)"
            )
        policies.restore(conn, ds, run.run_id)
        try:
            refreshed = policies.refresh_continuous_aggregates(conn, ds, run.start, run.end)
        except psycopg.Error as exc:
            runs.finish(conn, run.run_id, "failed")
            raise RunFailed(
                f"refreshing the continuous aggregates over the window failed: {str(exc).strip().splitlines()[0]}; "
                "clear finalize to retry (the load is verified and compressed; refreshing is idempotent)"
            ) from None
        report = build_report(conn, ds, run, results, reloaded=reloaded, left_for_live=left_for_live,
                              refreshed=refreshed, source_checked=sorted(check.source_counted) if check.entries else None)
        runs.finish(conn, run.run_id, "succeeded", report)
    return report


def _repair(connect: ConnectionFactory, ds: Dataset, run_id: str, check: Verification) -> list[ReloadedWindow]:
    """Reload windows whose commit was lost (or whose rows disagree with the ledger)."""
    to_reload: list[tuple[datetime, datetime]] = list(check.uncovered)
    for m in check.mismatches:
        if (m.start, m.end) not in to_reload:
            to_reload.append((m.start, m.end))
    reloaded: list[ReloadedWindow] = []
    for n, (s, e) in enumerate(sorted(to_reload)):
        log.warning("window [%s, %s) is not in the database as the ledger says (lost asynchronous commit?); reloading",
                    s.isoformat(), e.isoformat())
        result = load_batch(connect, ds, Batch(n, s, e), run_id)
        reloaded.append({"start": s.isoformat(), "end": e.isoformat(), "rows": result.rows})
    return reloaded

