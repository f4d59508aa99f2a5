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
3. **Progressive compression** advances the *watermark* over the contiguous prefix of finished batches
   (batch 0 first; a gap stalls it), compresses what is left behind it and waits in the triggerer until
   every batch has settled (`TIDEMARK_SENSOR_DEFERRABLE=false`: reschedule every `TIDEMARK_POKE_INTERVAL`
   seconds instead, default 10).
4. **Finalize** makes the load durable (one synchronous commit), verifies every window against the
   ledger and the source (reloading any batch whose asynchronous commit was lost), compresses the
   remaining boundary chunks, restores the compression policies, refreshes the continuous aggregates over
   the window and publishes the report. Plan refuses a window behind a retention policy's horizon.
   If anything upstream failed it compresses nothing more and the run **fails**.

## Params
* `dataset` - which dataset to load (the generic `tidemark_backfill` only: a dataset's own
  `tidemark_backfill__<dataset>` loads that dataset).
* `start`, `end` - the time range (ISO 8601, UTC if no offset). Empty, on a dataset with a `schedule`: the
  run's data interval (scheduled runs and `airflow backfill create`).
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
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException, AirflowSkipException, TaskDeferred

from tidemark.airflow import context, dag_defaults, hooks, names, params, tasks
from tidemark.airflow.sensors import ProgressiveCompressionSensor
from tidemark.config import Settings
from tidemark.flows import backfill, progressive
from tidemark.flows.report import format_report
from tidemark.flows.request import BackfillRequest
from tidemark.model.dataset import Dataset
from tidemark.model.payloads import BatchPayload, BatchResultPayload, PlanPayload, Report
from tidemark.model.run_plan import RunPlan
from tidemark.state import runs

__all__ = ["backfill_dag"]

log = logging.getLogger("tidemark.dag")
report_log = logging.getLogger("tidemark.report")


def report_level() -> int:
    """The report is what a run is for: INFO, or WARNING where the deployment logs nothing below that
    (`make airflow` and `make -s airflow-env` shells run Airflow at WARNING, which filters INFO task logs)."""
    from airflow.sdk.configuration import conf

    configured = logging.getLevelName(str(conf.get("logging", "logging_level", fallback="INFO")).upper())
    return logging.INFO if not isinstance(configured, int) or configured <= logging.INFO else logging.WARNING

DOC = __doc__


def backfill_dag(settings: Settings, dataset: Dataset | None = None, *, register: bool = True) -> DAG:
    """The backfill DAG of one dataset (``tidemark_backfill__<name>``), or the generic one (a ``dataset`` param).

    A dataset's DAG runs on the dataset's own ``schedule`` (each run loads its
    data interval; ``airflow backfill create`` reruns intervals) or, without
    one, only when triggered. The generic DAG never runs on a schedule.
    """
    poke_interval = settings.poke_interval  # >= 10 s under the scheduler (apache/airflow#71172)
    wait_interval = settings.wait_interval
    bound = dataset.name if dataset is not None else None
    schedule = dataset.schedule if dataset is not None else None

    @dag(
        **dag_defaults.common(settings, "backfill", dataset,
                              "Backfill a time range of a dataset into its TimescaleDB hypertables, compressing as it loads", register=register),
        doc_md=dag_defaults.doc_for(DOC, dataset),
        schedule=CronDataIntervalTimetable(schedule, timezone="UTC") if schedule is not None else None,
        max_active_runs=4,
        params={
            **params.range_params(empty_range_means="the run's data interval" if schedule is not None else None,
                                  default_interval="auto", allow_auto=True, generic=dataset is None),
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
        @task(task_id=names.PLAN, task_display_name="Plan batches")
        @tasks.fail_fast
        def plan() -> list[BatchPayload]:
            ctx = get_current_context()
            request = BackfillRequest.from_params(
                ctx["params"], ctx.get("data_interval_start"), ctx.get("data_interval_end"), dataset=bound
            )
            return tasks.hand_over(
                backfill.plan_run(hooks.connection_factory(), request, context.run_key(), context.run_alive)
            )

        @task(
            task_id=names.INSERT_BATCH,
            task_display_name="Insert batch",
            map_index_template="{{ batch_label }}",
            max_active_tis_per_dagrun=settings.max_parallel_batches,
        )
        @tasks.fail_fast
        def insert_batch(batch: BatchPayload, plan: PlanPayload) -> BatchResultPayload:
            run, b = tasks.this_batch(plan, batch)
            connect = hooks.connection_factory()  # one Airflow connection lookup for the check and the load
            try:
                return load(connect, run, b)
            except (AirflowRescheduleException, AirflowSkipException, TaskDeferred):
                raise  # waits and skips, not failures
            except Exception as exc:
                # The error's first line for the run's Tidemark tab while the run goes on (best effort; never a row).
                runs.note_failure(connect, run.run_id, b.index, get_current_context()["ti"].try_number, exc)
                raise

        def load(connect: Any, run: RunPlan, b: Any) -> BatchResultPayload:
            reason = progressive.wait_reason(
                connect,
                run,
                b,
                max_ahead=settings.max_batches_ahead,
                # Asked only if the batch would wait: one execution-API call saved per batch that loads at once.
                sibling_failed=lambda: bool(
                    progressive.failed_batches(context.mapped_states(names.INSERT_BATCH), len(run.batches))
                ),
                stale_after=timedelta(seconds=max(60.0, 6 * poke_interval)),
            )
            if reason:
                log.info(reason)
                context.reschedule(context.dag_test_wait(wait_interval))
            return backfill.insert_batch(connect, run, b)

        @task(task_id=names.FINALIZE, task_display_name="Finalize: verify, compress, report", trigger_rule="all_done",
              multiple_outputs=True)
        @tasks.fail_fast
        def finalize(plan: PlanPayload | None) -> Report | PlanPayload:
            if plan is None:
                raise AirflowFailException("plan did not finish: nothing was loaded; see the plan task's log")
            run = RunPlan.of(plan)
            found = context.run_states([names.INSERT_BATCH, names.SENSOR])  # one API call for both
            try:
                report = backfill.finalize(
                    hooks.connection_factory(),
                    run,
                    context.mapped_states(names.INSERT_BATCH, found),
                    context.mapped_results(names.INSERT_BATCH, range(len(run.batches))),
                    upstream_ok=context.task_state(names.SENSOR, found) in ("success", "skipped", None),
                )
            except backfill.RunFailed as exc:
                raise AirflowFailException(str(exc)) from None
            if report is None:  # a dry run: its report is its plan
                return run.to_payload()
            report_log.log(report_level(), "\n%s", format_report(report))
            return report

        planned: Any = plan()
        inserted = insert_batch.partial(plan=planned[names.PLAN_KEY]).expand(batch=planned)
        sensor = ProgressiveCompressionSensor(
            task_id=names.SENSOR,
            task_display_name="Progressive compression",
            plan=planned[names.PLAN_KEY],
            mode="reschedule",
            deferrable=settings.sensor_deferrable,
            poke_interval=poke_interval,
            timeout=timedelta(days=2).total_seconds(),
        )
        [inserted, sensor] >> finalize(planned[names.PLAN_KEY])

    built: DAG = tidemark_backfill()
    return built
