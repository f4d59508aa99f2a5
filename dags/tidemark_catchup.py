"""
# Tidemark catchup

Loads a lag `[start, end)` of a dataset **in parallel** and publishes it **in one transaction**:
readers see none of it until the publish, then all of it, and the live cursor moves with the rows.
Triggered by `tidemark_live` when live ingestion falls behind, or by hand.

1. **Plan batches** validates the params, starts the dataset's live cursor at `start` if it has none
   (and refuses a `start` that is not the cursor), claims the range and creates per-catchup staging
   (UNLOGGED tables; nothing visible to readers).
2. **Stage batch** (mapped, one per batch window) loads each batch into staging and records it in the
   staging manifest. Parallelism: `TIDEMARK_MAX_PARALLEL_BATCHES` (default 4).
3. **Publish** (runs whatever happened, publishes only when every batch succeeded — otherwise it
   writes nothing and fails the run, releasing its claim) checks staging against the plan and the manifest,
   then in ONE synchronous transaction moves all rows into the hypertables, records the batch ledger
   and advances the cursor by compare-and-swap (only if it still equals `start`; otherwise it aborts
   with nothing written). Then it drops the staging.

No progressive compression here, by design: the hypertables' compression policy owns recent chunks.

## Resume
A failed batch leaves the hypertables and the cursor untouched. Clear the failed task instances of the
run (only those batches reload, then publish proceeds), or trigger a new run with the same params:
staging is keyed by dataset, range and batch interval, so what is staged is reused. If the engine
restarted and staging is gone or partial, publish refuses and names the batches to rerun.

## Trigger by hand
`airflow dags trigger tidemark_catchup -c '{"dataset": "ledgers", "start": "<the cursor>", "end": "...", "batch_interval": "15 minutes"}'`
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from tidemark.airflow import context
from tidemark.airflow import hooks
from tidemark.airflow import params
from tidemark.airflow import tasks
from tidemark.airflow import wiring
from tidemark.flows import catchup
from tidemark import config as settings
from tidemark.flows.backfill import BackfillRequest
from tidemark.model.batch import Batch

log = logging.getLogger("tidemark.dag")

SETTINGS = settings.load()  # a bad TIDEMARK_* value fails the import with a message naming it
wiring.use_dags_folder(Path(__file__).parent)  # datasets/ declarations next to this file; sources' connections
MAX_PARALLEL_BATCHES = SETTINGS.max_parallel_batches


@dag(
    dag_id=Path(__file__).stem,
    dag_display_name="Tidemark catchup",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["tidemark", "timescaledb"],
    default_args=SETTINGS.task_retries(),  # every task: TIDEMARK_RETRIES after TIDEMARK_RETRY_DELAY
    params=params.range_params(empty_range_means=None, default_interval="15 minutes"),
)
def tidemark_catchup() -> None:
    @task(task_display_name="Plan batches")
    @tasks.fail_fast
    def plan() -> list:
        request = BackfillRequest.from_params(get_current_context()["params"])
        try:
            planned = catchup.plan_catchup(hooks.connection_factory(), request, context.run_key(), context.run_alive)
        except catchup.CursorMoved as exc:
            raise AirflowFailException(str(exc)) from None
        context.push("summary", planned["summary"])
        return planned["batches"]

    @task(
        task_display_name="Stage batch",
        map_index_template="{{ batch_label }}",
        max_active_tis_per_dagrun=MAX_PARALLEL_BATCHES,
    )
    @tasks.fail_fast
    def stage_batch(batch: dict, summary: dict) -> dict:
        context.set_map_label(Batch.from_dict(batch).label)
        return catchup.stage_batch(hooks.connection_factory(), summary, batch)

    @task(task_display_name="Publish in one transaction", trigger_rule="all_done")
    def publish() -> dict:
        summary = context.pull("plan", key="summary")
        if summary is None:
            raise AirflowFailException("plan did not finish: nothing was staged or published; see the plan task's log")
        batches = context.pull("plan") or []
        try:
            return catchup.publish(hooks.connection_factory(), summary, batches, context.mapped_states("stage_batch"))
        except (catchup.CursorMoved, catchup.StagingIncomplete) as exc:
            raise AirflowFailException(str(exc)) from None

    batches = plan()
    staged = stage_batch.partial(summary=batches["summary"]).expand(batch=batches)
    staged >> publish()


tidemark_catchup()
