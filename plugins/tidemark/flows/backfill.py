"""The backfill run, step by step, as plain functions the DAG's tasks call.

Each step takes a connection factory and plain data (what Airflow passes
through XCom), so the whole flow — plan, load, progressive compression,
finalize — is testable without Airflow, and the DAG file stays wiring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from tidemark.timescale import columnstore, compressor, policies
from tidemark.state import cursors, ledger, progress, runs
from tidemark.model import payloads
from tidemark.declare import catalog
from tidemark import faults
from tidemark.connection import ConnectionFactory, one
from tidemark.model.dataset import Dataset
from tidemark.errors import InvalidInput, TidemarkError
from tidemark.load.loader import BatchResult, load_batch
from tidemark.model.payloads import BatchPayload, BatchResultPayload, Planned, ReloadedWindow, Report, Summary
from tidemark.flows.plan import AUTO, auto_interval, estimate_rows, plan_batches
from tidemark.model.batch import Batch
from tidemark.flows.report import build_report
from tidemark.model.timeparse import format_interval, parse_instant, parse_interval
from tidemark.flows.verify import Verification, verify
from tidemark.flows.watermark import Watermark, advance

log = logging.getLogger(__name__)

# Task states after which a batch will not succeed without a human clearing it.
FAILED_STATES = frozenset({"failed", "upstream_failed", "removed"})


class BatchesFailed(TidemarkError):
    """Some batches failed: compression stopped at the gap they leave."""


class RunFailed(TidemarkError):
    """The run cannot be declared complete; the message says how to resume."""


@dataclass(frozen=True)
class BackfillRequest:
    dataset: str
    start: datetime
    end: datetime
    batch_interval: timedelta
    dry_run: bool = False
    allow_older_than_retention: bool = False  # load history a retention policy will drop (explicit opt-in)

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
    ) -> BackfillRequest:
        """Validate trigger params; empty start/end mean the run's data interval (scheduled runs)."""
        name = params.get("dataset") or ""
        catalog.get(name)  # unknown dataset -> InvalidInput naming the choices
        start_raw = params.get("start") or data_interval_start
        end_raw = params.get("end") or data_interval_end
        if start_raw is None or end_raw is None:
            raise InvalidInput("start and end are required for a manual run (e.g. 2024-01-01T00:00:00+00:00)")
        start = parse_instant(start_raw)
        end = parse_instant(end_raw)
        raw_interval = str(params.get("batch_interval") or AUTO).strip()
        if raw_interval.lower() == AUTO:
            interval = auto_batch_interval(catalog.get(name), start, end)
        else:
            interval = parse_interval(raw_interval)
        plan_batches(start, end, interval)  # range, interval and batch-count checks, before any write
        return cls(name, start, end, interval, bool(params.get("dry_run", False)),
                   params.get(policies.ALLOW_PARAM, False) is True)

    def describe(self) -> str:
        return (
            f"{self.dataset} [{self.start.isoformat()}, {self.end.isoformat()}) "
            f"in batches of {format_interval(self.batch_interval)}"
        )


def auto_batch_interval(ds: Dataset, start: datetime, end: datetime) -> timedelta:
    """``batch_interval: auto``: batches sized from the source's density (planner.auto_interval).

    The density comes from the source's ``expected_counts`` when it has one,
    else from counting a few sampled windows; a source that offers neither
    gets one chunk interval per batch.
    """
    rows = estimate_rows(ds.feeds(), start, end)
    interval = auto_interval(start, end, rows, min(t.chunk_interval for t in ds.tables))
    log.info("batch_interval auto: %s rows estimated -> batches of %s",
             f"{rows:,}" if rows is not None else "no", format_interval(interval))
    return interval


def _bookkeeping_exists(conn: psycopg.Connection) -> bool:
    return bool(one(conn.execute("SELECT to_regclass('tidemark.batch_ledger') IS NOT NULL"))[0])


def plan_run(
    connect: ConnectionFactory,
    request: BackfillRequest,
    run_id: str,
    alive: Callable[[str], bool] = lambda run_id: True,
) -> Planned:
    """Plan the batches still to load, claim the window, pause compression policies.

    Returns ``{"batches": [...], "summary": {...}}``; batches are small dicts
    (index, window) for the mapped insert task.
    """
    ds = catalog.get(request.dataset)
    with connect() as conn:
        retention = policies.retention_horizons(conn, ds)
        policies.refuse_beyond_retention(retention, request.start, allowed=request.allow_older_than_retention)
        if request.dry_run:
            loaded = ledger.loaded_windows(conn, ds.name, request.start, request.end) if _bookkeeping_exists(conn) else []
        else:
            from tidemark.timescale.schema import ensure_schema

            ds = ensure_schema(conn, ds)
            loaded = ledger.loaded_windows(conn, ds.name, request.start, request.end)
        direct = [] if request.dry_run else columnstore.resolve(conn, ds)
        plan = plan_batches(request.start, request.end, request.batch_interval, loaded=loaded)
        if not request.dry_run:
            runs.claim(conn, run_id, ds.name, "backfill", request.start, request.end, len(plan.batches), alive)
            policies.pause(conn, ds, run_id)
    summary: Summary = {
        "run_id": run_id,
        "dataset": ds.name,
        "start": request.start.isoformat(),
        "end": request.end.isoformat(),
        "batch_interval": format_interval(request.batch_interval),
        "total_windows": plan.total_windows,
        "skipped_windows": len(plan.skipped),
        "planned_batches": len(plan.batches),
        "dry_run": request.dry_run,
        "retention": [h.to_dict() for h in retention],
        # Tables written straight into the columnstore, and whether their chunks get recompressed
        # behind the watermark (only when many batches write into each chunk).
        "direct_compress": direct,
        "recompress_unordered": bool(direct) and _writes_per_chunk(ds, request.batch_interval)
        >= columnstore.RECOMPRESS_MIN_WRITES,
    }
    batches = [payloads.batch_payload(b) for b in plan.batches]
    log.info(
        "plan %s: %d windows, %d already loaded, %d to load%s; %s",
        request.describe(), plan.total_windows, len(plan.skipped), len(plan.batches), " (dry run)" if request.dry_run else "",
        f"direct-to-columnstore COPY into {', '.join(direct)}" if direct else "classic COPY + progressive compression",
    )
    if request.dry_run:
        summary["would_load"] = batches
        return {"batches": [], "summary": summary}
    return {"batches": batches, "summary": summary}


def failed_batches(states: Mapping[int, str | None], planned: int) -> list[int]:
    """Map indexes of this plan's batches that are in a failed state.

    Only indexes below ``planned`` count. When a cleared run plans again (the whole run cleared, or
    `airflow backfill create --reprocess-behavior failed|completed`), the windows its earlier try
    loaded are skipped, the mapping shrinks, and Airflow marks the surplus map indexes ``removed``:
    they are left over from the earlier plan, not failures of this one.
    """
    return sorted(i for i, s in states.items() if i < planned and s in FAILED_STATES)
def _writes_per_chunk(ds: Dataset, interval: timedelta) -> int:
    """How many batch windows write into one chunk at most (a window straddling a boundary counts twice)."""
    return max(-(-t.chunk_interval // interval) + (0 if t.chunk_interval % interval == timedelta(0) else 1)
               for t in ds.tables)


def dataset_of(summary: Mapping[str, Any]) -> Dataset:
    """The run's dataset with the write mode its plan resolved (older summaries: classic)."""
    return columnstore.with_mode(catalog.get(summary["dataset"]), summary.get("direct_compress") or [])


def _all_direct(summary: Mapping[str, Any], ds: Dataset) -> bool:
    direct = set(summary.get("direct_compress") or [])
    return bool(direct) and all(t.name in direct for t in ds.tables)


def ledger_watermark(conn: psycopg.Connection, summary: Mapping[str, Any]) -> tuple[datetime, datetime | None]:
    """(end of the committed prefix of the run's range, last commit of this run) from the batch ledger.

    The ledger row commits with its batch's rows, so this is exactly what is
    safe to compress, known the moment a batch commits: neither the
    backpressure nor compression has to wait for the sensor's next poke. The
    sensor's persisted watermark is a lower bound, so only the windows beyond
    it are read (cost O(batches in flight), not O(batches)).
    """
    start, end = parse_instant(summary["start"]), parse_instant(summary["end"])
    row = conn.execute(
        "SELECT r.watermark_time, (SELECT max(committed_at) FROM tidemark.batch_ledger l"
        " WHERE l.dataset = r.dataset AND l.run_id = r.run_id) FROM tidemark.runs r WHERE r.run_id = %s",
        (summary["run_id"],),
    ).fetchone()
    mark = max(start, row[0]) if row and row[0] is not None else start
    for s, e in ledger.loaded_windows(conn, summary["dataset"], mark, end):
        if s > mark:
            break
        mark = max(mark, e)
    return min(mark, end), (row[1] if row else None)


def wait_reason(
    connect: ConnectionFactory,
    summary: Summary,
    batch: BatchPayload,
    *,
    max_ahead: int,
    sibling_failed: bool | Callable[[], bool],
    stale_after: timedelta,
) -> str | None:
    """Why this batch should wait before loading, or None to load now.

    Backpressure: a batch starting more than ``max_ahead`` batch intervals
    beyond the committed prefix (the ledger watermark) waits, so the
    uncompressed backlog stays bounded whatever order the scheduler runs the
    batches in. Never waits when waiting cannot help or is not needed: every
    table is written straight into the columnstore (there is no uncompressed
    backlog), a sibling batch failed (the watermark will not pass it), or no
    batch of the run has committed for ``stale_after``. ``sibling_failed`` may
    be a callable: it is asked only when the batch would otherwise wait, so a
    batch that loads at once spends no execution-API call on its siblings.
    """
    if max_ahead <= 0 or summary.get("dry_run") or (isinstance(sibling_failed, bool) and sibling_failed):
        return None
    ds = catalog.get(summary["dataset"])
    if _all_direct(summary, ds):
        return None
    b = Batch.from_dict(batch)
    interval = parse_interval(summary["batch_interval"])
    with connect() as conn:
        mark, last_commit = ledger_watermark(conn, summary)
        now = one(conn.execute("SELECT clock_timestamp()"))[0]
    ahead = (b.start - mark) // interval
    if ahead < max_ahead:
        return None
    if last_commit is not None and now - last_commit > stale_after:
        return None
    if callable(sibling_failed) and sibling_failed():
        return None
    return (
        f"batch {b.index} waits: it starts {ahead} batches beyond the committed prefix ({mark.isoformat()}) and at "
        f"most {max_ahead} batches load ahead of it (TIDEMARK_MAX_BATCHES_AHEAD), keeping the uncompressed backlog bounded"
    )


def insert_batch(
    connect: ConnectionFactory, summary: Summary, batch: BatchPayload, *, compress: bool = True
) -> BatchResultPayload:
    """Load the batch; if it extended the committed prefix, compress the chunks now lying behind it.

    Compressing here, in the batch that completes a chunk, keeps the backlog
    small without waiting for the sensor: under ``airflow dags test`` (one
    task at a time) the sensor may run only after every batch. ``compress=False``
    leaves all compression to others (the compress-at-end benchmark).
    """
    ds = dataset_of(summary)
    planned = b = Batch.from_dict(batch)
    result = load_batch(connect, ds, b, summary["run_id"])
    c0 = time.perf_counter()
    compressed = _compress_completed(connect, summary, ds, b) if compress else 0
    log.info(
        "batch %d %s: %d rows (%s) in %.2fs (generate %.2fs, database %.2fs)%s",
        result.index, b.label, result.total_rows, result.rows, result.seconds,
        result.generate_seconds, result.db_seconds,
        f"; compressed {compressed} chunks behind the watermark in {time.perf_counter() - c0:.2f}s" if compressed else "",
    )
    return payloads.result_payload(planned, result)


def _compress_completed(connect: ConnectionFactory, summary: Mapping[str, Any], ds: Dataset, b: Batch) -> int:
    """Compress the chunks this batch's commit completed (best effort: the sensor retries what fails)."""
    try:
        with connect() as conn:
            if ds.direct_compress:
                compressor.log_direct(conn, ds, b.start, b.end, summary["run_id"])
            if _all_direct(summary, ds) and not summary.get("recompress_unordered"):
                return 0
            mark, _ = ledger_watermark(conn, summary)
            if b.start >= mark:  # a gap before this batch: it completed nothing
                return 0
            lower = max(parse_instant(summary["start"]), b.start - max(t.chunk_interval for t in ds.tables))
            done = compressor.compress_behind(
                conn, ds, lower, mark, run_id=summary["run_id"],
                recompress_unordered=bool(summary.get("recompress_unordered")), attempts=1,
            )
            return sum(1 for r in done if r.ok and r.action != "unchanged")
    except Exception as exc:  # noqa: BLE001 - the batch is committed; the sensor compresses what is left
        log.warning("batch %d: compressing behind the watermark failed (%s); the sensor will retry", b.index, exc)
        return 0


@dataclass(frozen=True)
class PokeOutcome:
    done: bool
    failed: list[int]
    watermark: Watermark
    compressed_now: int
    compressed_total: int
    compress_failures: int
    backlog_chunks: int
    backlog_bytes: int

    def line(self) -> str:
        wm = self.watermark
        return (
            f"watermark {wm.completed}/{wm.total} at {wm.time.isoformat()} | "
            f"compressed {self.compressed_now} chunks this poke, {self.compressed_total} in total"
            + (f" ({self.compress_failures} failed, retried next poke)" if self.compress_failures else "")
            + f" | uncompressed backlog {self.backlog_chunks} chunks ({_mib(self.backlog_bytes)})"
        )


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


ResultFetcher = Callable[[list[int]], Mapping[int, BatchResultPayload | None]]


def poke(
    connect: ConnectionFactory,
    summary: Summary,
    batches: Sequence[BatchPayload],
    states: Mapping[int, str | None],
    fetch_results: ResultFetcher,
) -> PokeOutcome:
    """One sensor poke: advance the watermark over finished batches and compress behind it.

    Only batches beyond the persisted watermark have their results fetched, so
    a poke costs O(batches in flight), not O(all batches). The prefix below the
    watermark is re-checked against the states (cheap, no results fetched): a
    batch cleared for a rerun pulls the watermark back instead of being trusted.
    """
    ds = dataset_of(summary)
    plan = [Batch.from_dict(b) for b in batches]
    start = parse_instant(summary["start"])
    run_id = summary["run_id"]
    faults.check("sensor.poke")
    with connect() as conn:
        previous = runs.progress(conn, run_id)
        k = previous.watermark_batches if previous else 0
        k = min(k, len(plan))
        for i in range(k):
            if states.get(i) != "success":
                k = i
                break
        candidates = [i for i in range(k, len(plan)) if states.get(i) == "success"]
        fetched = fetch_results(candidates) if candidates else {}
        finished = [i for i in candidates if _result_matches(fetched.get(i), plan[i])]
        base = Watermark(k, len(plan), plan[k - 1].end if k else start)
        wm = advance(base, finished, plan) if plan else base
        end = parse_instant(summary["end"])
        # The backlog before compressing is what the load accumulated: that is the peak to record.
        peak_chunks, peak_bytes = compressor.backlog(conn, ds, start, end)
        results = compressor.compress_behind(
            conn, ds, start, wm.time, run_id=run_id, recompress_unordered=bool(summary.get("recompress_unordered"))
        ) if plan else []
        backlog_chunks, backlog_bytes = compressor.backlog(conn, ds, start, end) if results else (peak_chunks, peak_bytes)
        runs.record_progress(
            conn, run_id, watermark_batches=wm.completed, watermark_time=wm.time,
            backlog_chunks=peak_chunks, backlog_bytes=peak_bytes,
        )
        progress.record_poke(
            conn, run_id, watermark_batches=wm.completed, watermark_time=wm.time, backlog_chunks=peak_chunks,
            backlog_bytes=peak_bytes, remaining_chunks=backlog_chunks, remaining_bytes=backlog_bytes,
        )
        total = one(conn.execute(
            "SELECT count(*) FROM tidemark.compression_log WHERE run_id = %s AND phase = 'progressive'", (run_id,)
        ))[0]
    failed = failed_batches(states, len(plan))
    return PokeOutcome(
        done=wm.complete,
        failed=failed,
        watermark=wm,
        compressed_now=sum(1 for r in results if r.ok),
        compressed_total=int(total),
        compress_failures=sum(1 for r in results if not r.ok),
        backlog_chunks=backlog_chunks,
        backlog_bytes=backlog_bytes,
    )


def _result_matches(result: BatchResultPayload | None, batch: Batch) -> bool:
    """A success state without the batch's own result (or with another window's) is not trusted."""
    if not result:
        return False
    try:
        return (
            int(result["index"]) == batch.index
            and parse_instant(result["start"]) == batch.start
            and parse_instant(result["end"]) == batch.end
        )
    except (KeyError, TypeError, ValueError, InvalidInput):
        return False


def failure_message(summary: Summary, failed: Sequence[int], batches: Sequence[BatchPayload]) -> str:
    windows = ", ".join(Batch.from_dict(batches[i]).label for i in failed[:10] if i < len(batches))
    more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
    return (
        f"batches {list(failed)} failed ({windows}{more}); chunks from the first failed window on stay uncompressed. "
        "Resume: clear the failed task instances of this run (UI: select them > Clear, or REST clearTaskInstances "
        "with dag_run_id and only_failed=true), or trigger a new run with the same params - loaded windows are skipped."
    )


def finalize(
    connect: ConnectionFactory,
    summary: Summary,
    batches: Sequence[BatchPayload],
    states: Mapping[int, str | None],
    results: Mapping[int, BatchResultPayload | None],
    upstream_ok: bool = True,
) -> Report | Summary:
    """Make the load durable, verify it (reloading lost batches), compress the rest, report.

    Raises RunFailed when any batch or the sensor failed: a run whose final task
    succeeds must mean the window is loaded, verified and compressed.
    """
    ds = dataset_of(summary) if not summary.get("dry_run") else catalog.get(summary["dataset"])
    run_id = summary["run_id"]
    if summary.get("dry_run"):
        return summary.copy()  # the dry run's report is its plan
    plan = [Batch.from_dict(b) for b in batches]
    failed = sorted(i for i in range(len(plan)) if states.get(i) != "success")
    start = parse_instant(summary["start"])
    end = parse_instant(summary["end"])
    with connect() as conn:
        if failed or not upstream_ok:
            policies.restore(conn, ds, run_id)
            runs.finish(conn, run_id, "failed")
            if failed:
                raise RunFailed(failure_message(summary, failed, batches))
            raise RunFailed(
                "the progressive compression task failed although every batch loaded; clear it (or trigger a new "
                "run with the same params) to compress the rest"
            )
        runs.heartbeat(conn, run_id)
        runs.make_durable(conn, run_id)
        windows = _windows(start, end, summary)
        check = verify(conn, ds, windows)
        reloaded = _repair(connect, ds, run_id, check)
        if reloaded:
            runs.make_durable(conn, run_id)
            check = verify(conn, ds, windows)
        if not check.ok:
            problems = [f"[{s.isoformat()}, {e.isoformat()}) missing from the ledger" for s, e in check.uncovered]
            problems += [m.describe() for m in check.mismatches]
            runs.finish(conn, run_id, "failed")
            policies.restore(conn, ds, run_id)
            raise RunFailed("verification failed after reloading: " + "; ".join(problems[:10]))
        horizon = cursors.position(conn, ds.name)
        final, left_for_live = compressor.final_pass(
            conn, ds, start, end, run_id=run_id, live_horizon=horizon,
            recompress_unordered=bool(summary.get("recompress_unordered")),
        )
        bad = [r for r in final if not r.ok]
        if bad:
            runs.finish(conn, run_id, "failed")
            policies.restore(conn, ds, run_id)
            raise RunFailed(
                "final compression failed for " + ", ".join(f"{r.chunk.name} ({r.error})" for r in bad[:5])
                + "; clear finalize to retry (compression is idempotent)"
            )
        policies.restore(conn, ds, run_id)
        try:
            refreshed = policies.refresh_continuous_aggregates(conn, ds, start, end)
        except psycopg.Error as exc:
            runs.finish(conn, run_id, "failed")
            raise RunFailed(
                f"refreshing the continuous aggregates over the window failed: {str(exc).strip().splitlines()[0]}; "
                "clear finalize to retry (the load is verified and compressed; refreshing is idempotent)"
            ) from None
        report = build_report(conn, ds, summary, results, reloaded=reloaded, left_for_live=left_for_live,
                              refreshed=refreshed)
        runs.finish(conn, run_id, "succeeded", report)
    return report


def _windows(start: datetime, end: datetime, summary: Summary) -> list[tuple[datetime, datetime]]:
    """Every window of the run's range at its batch interval (skipped ones included: they must still be there)."""
    plan = plan_batches(start, end, summary["batch_interval"])
    return [(b.start, b.end) for b in plan.batches]


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
        result: BatchResult = load_batch(connect, ds, Batch(n, s, e), run_id)
        reloaded.append({"start": s.isoformat(), "end": e.isoformat(), "rows": result.rows})
    return reloaded
