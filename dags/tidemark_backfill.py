"""
# Tidemark backfill

Loads a historical time range of a dataset into its TimescaleDB hypertables **at full speed** and
**keeps storage compact while it runs**.

1. **Plan batches** splits `[start, end)` into time-ordered batches of `batch_interval`, skipping
   windows already loaded (the batch ledger), claims the window (a second overlapping run is refused)
   and pauses the hypertables' compression policies.
2. **Insert batch** (one mapped instance per batch, shown by its window) loads each batch in one
   transaction with `COPY` and `synchronous_commit = off`, replacing the window's rows, so a retry never
   duplicates. Where every hypertable allows it (no primary key, unique index, triggers or continuous
   aggregates), COPY writes straight into the columnstore: chunks are compressed as they are written
   (`TIDEMARK_DIRECT_COMPRESS=auto|on|off`). Parallelism: `TIDEMARK_MAX_PARALLEL_BATCHES` (default 4) in
   the scheduler's environment. A batch that completes the committed prefix compresses the chunks now
   behind it. Backpressure (classic COPY only): a batch more than `TIDEMARK_MAX_BATCHES_AHEAD` (default: the
   parallelism) batches beyond the committed prefix waits, so the uncompressed backlog stays bounded in
   any scheduling order.
3. **Progressive recompression** advances the *watermark* over the contiguous prefix of finished batches
   (batch 0 first; a gap stalls it), compresses what is left behind it and waits in the triggerer until
   every batch has settled (`TIDEMARK_SENSOR_DEFERRABLE=false`: reschedule every `TIDEMARK_POKE_INTERVAL`
   seconds instead, default 10).
4. **Finalize** makes the load durable (one synchronous commit), verifies every window against the
   ledger and the source (reloading any batch whose asynchronous commit was lost), compresses the
   remaining boundary chunks, restores the compression policies, refreshes the continuous aggregates over
   the window and publishes the report. Plan refuses a window behind a retention policy's horizon.
   If anything upstream failed it compresses nothing more and the run **fails**.

## Params
* `dataset` - which dataset to load.
* `start`, `end` - the time range (ISO 8601, UTC if no offset). Empty: the run's data interval
  (scheduled runs and `airflow backfill create`).
* `batch_interval` - `auto` (default: about 250,000 rows per batch from the source's density, whole chunks)
  or batch size as time, e.g. `3 hours`, `1 day`, `30 minutes` (at most 1,024 batches).
* `dry_run` - plan and report only; nothing is written.
* `allow_older_than_retention` - load a window reaching behind a hypertable's retention horizon anyway
  (refused by default: the retention policy would silently delete it).

## Resume
Clear the failed task instances of the run (Grid view: select > Clear; or REST
`POST /api/v2/dags/tidemark_backfill/clearTaskInstances` with `dag_run_id` and `only_failed: true`),
or trigger a new run with the same params: loaded windows are skipped, nothing is loaded twice.

## Report
Finalize's log and return value: rows per table and total, rows/s, batches (loaded, skipped, reloaded),
chunks compressed progressively vs. in the final pass, bytes before/after and ratio, the peak
uncompressed backlog during the load, and the time from the last batch to fully compressed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from tidemark.airflow import context
from tidemark.airflow import hooks
from tidemark.airflow import params
from tidemark.airflow import tasks
from tidemark.airflow import wiring
from tidemark.flows import backfill
from tidemark.model import payloads
from tidemark import config as settings
from tidemark.model.payloads import BatchPayload, BatchResultPayload, Report, Summary
from tidemark.model.batch import Batch
from tidemark.flows.report import format_report
from tidemark.airflow.sensors import ProgressiveRecompressSensor

log = logging.getLogger("tidemark.dag")

SETTINGS = settings.load()  # a bad TIDEMARK_* value fails the import with a message naming it
wiring.use_dags_folder(Path(__file__).parent)  # datasets/ declarations next to this file; sources' connections
MAX_PARALLEL_BATCHES = SETTINGS.max_parallel_batches
POKE_INTERVAL = SETTINGS.poke_interval  # >= 10 s under the scheduler (apache/airflow#71172)
MAX_BATCHES_AHEAD = SETTINGS.max_batches_ahead  # 0: no backpressure
WAIT_INTERVAL = SETTINGS.wait_interval
SENSOR_DEFERRABLE = SETTINGS.sensor_deferrable  # wait in the triggerer; false: reschedule every POKE_INTERVAL


@dag(
    dag_id=Path(__file__).stem,
    dag_display_name="Tidemark backfill",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=4,
    tags=["tidemark", "timescaledb"],
    default_args=SETTINGS.task_retries(),  # every task: TIDEMARK_RETRIES after TIDEMARK_RETRY_DELAY
    params={
        **params.range_params(empty_range_means="the run's data interval", default_interval="auto", allow_auto=True),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Plan and report only: nothing is written to the database.",
        ),
        "allow_older_than_retention": Param(
            False,
            type="boolean",
            title="Load history older than a retention policy keeps",
            description="A hypertable's retention policy (drop_after) deletes chunks older than its horizon on its "
            "next run. By default a window reaching behind it is refused; true loads it anyway.",
        ),
    },
)
def tidemark_backfill() -> None:
    @task(task_display_name="Plan batches")
    @tasks.fail_fast
    def plan() -> list[BatchPayload]:
        ctx = get_current_context()
        request = backfill.BackfillRequest.from_params(
            ctx["params"], ctx.get("data_interval_start"), ctx.get("data_interval_end")
        )
        planned = backfill.plan_run(hooks.connection_factory(), request, context.run_key(), context.run_alive)
        context.push("summary", planned["summary"])
        return planned["batches"]  # mapped over: must be the return value

    @task(
        task_display_name="Insert batch",
        map_index_template="{{ batch_label }}",
        max_active_tis_per_dagrun=MAX_PARALLEL_BATCHES,
    )
    @tasks.fail_fast
    def insert_batch(batch: BatchPayload, summary: Summary) -> BatchResultPayload:
        batch, summary = payloads.check_batch(batch), payloads.check_summary(summary)
        context.set_map_label(Batch.from_dict(batch).label)
        connect = hooks.connection_factory()  # one Airflow connection lookup for the check and the load
        reason = backfill.wait_reason(
            connect,
            summary,
            batch,
            max_ahead=MAX_BATCHES_AHEAD,
            # Asked only if the batch would wait: one execution-API call saved per batch that loads at once.
            sibling_failed=lambda: bool(
                backfill.failed_batches(context.mapped_states("insert_batch"), summary["planned_batches"])
            ),
            stale_after=timedelta(seconds=max(60.0, 6 * POKE_INTERVAL)),
        )
        if reason:
            log.info(reason)
            context.reschedule(context.dag_test_wait(WAIT_INTERVAL))
        return backfill.insert_batch(connect, summary, batch)

    @task(task_display_name="Finalize: verify, compress, report", trigger_rule="all_done", multiple_outputs=True)
    def finalize() -> Report | Summary:
        pulled = context.pull("plan", key="summary")
        if pulled is None:
            raise AirflowFailException("plan did not finish: nothing was loaded; see the plan task's log")
        planned = payloads.check_summary(pulled)
        batches = [payloads.check_batch(b) for b in context.pull("plan") or []]
        found = context.run_states(["insert_batch", "progressive_recompress"])  # one API call for both
        try:
            report = backfill.finalize(
                hooks.connection_factory(),
                planned,
                batches,
                context.mapped_states("insert_batch", found),
                context.mapped_results("insert_batch", range(len(batches))),
                upstream_ok=context.task_state("progressive_recompress", found) in ("success", "skipped", None),
            )
        except backfill.RunFailed as exc:
            raise AirflowFailException(str(exc)) from None
        log.info("\n%s", format_report(report))
        return report

    batches = plan()
    inserted = insert_batch.partial(summary=batches["summary"]).expand(batch=batches)
    sensor = ProgressiveRecompressSensor(
        task_id="progressive_recompress",
        task_display_name="Progressive recompression",
        batches=batches,
        summary=batches["summary"],
        mode="reschedule",
        deferrable=SENSOR_DEFERRABLE,
        poke_interval=POKE_INTERVAL,
        timeout=timedelta(days=2).total_seconds(),
    )
    [inserted, sensor] >> finalize()


tidemark_backfill()
