"""
# Tidemark catchup

Loads a lag `[start, end)` of a dataset **in parallel** and publishes it **in one transaction**:
readers see none of it until the publish, then all of it, and the live cursor moves with the rows.
Triggered by a dataset's live DAG when live ingestion falls behind (`tidemark_catchup__<dataset>`), or by
hand (that DAG, or the generic `tidemark_catchup` with a `dataset` param).

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

from typing import Any

from airflow.sdk import DAG, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from tidemark.airflow import context, dag_defaults, hooks, names, params, tasks
from tidemark.config import Settings
from tidemark.flows import catchup
from tidemark.flows.request import BackfillRequest
from tidemark.model.dataset import Dataset
from tidemark.model.payloads import BatchPayload, BatchResultPayload, PlanPayload

__all__ = ["catchup_dag"]

DOC = __doc__


def catchup_dag(settings: Settings, dataset: Dataset | None = None, *, register: bool = True) -> DAG:
    """The catchup DAG of one dataset (``tidemark_catchup__<name>``, what its live DAG hands over to), or the generic one."""
    bound = dataset.name if dataset is not None else None

    @dag(
        **dag_defaults.common(settings, "catchup", dataset,
                              "Load a lag of a dataset in parallel into staging and publish it in one transaction", register=register),
        doc_md=dag_defaults.doc_for(DOC, dataset),
        schedule=None,
        max_active_runs=1,
        params=params.range_params(empty_range_means=None, default_interval="15 minutes", generic=dataset is None),
    )
    def tidemark_catchup() -> None:
        @task(task_id=names.PLAN, task_display_name="Plan batches")
        @tasks.fail_fast
        def plan() -> list[BatchPayload]:
            request = BackfillRequest.from_params(get_current_context()["params"], dataset=bound)
            try:
                return tasks.hand_over(
                    catchup.plan_catchup(hooks.connection_factory(), request, context.run_key(), context.run_alive)
                )
            except catchup.CursorMoved as exc:
                raise AirflowFailException(str(exc)) from None

        @task(
            task_id=names.STAGE_BATCH,
            task_display_name="Stage batch",
            map_index_template="{{ batch_label }}",
            max_active_tis_per_dagrun=settings.max_parallel_batches,
        )
        @tasks.fail_fast
        def stage_batch(batch: BatchPayload, plan: PlanPayload) -> BatchResultPayload:
            run, b = tasks.this_batch(plan, batch)
            return catchup.stage_batch(hooks.connection_factory(), run, b)

        @task(task_id=names.PUBLISH, task_display_name="Publish in one transaction", trigger_rule="all_done")
        @tasks.fail_fast  # bad input (a table another dataset owns since the plan) will not fix itself on retry
        def publish(plan: PlanPayload | None) -> dict[str, Any]:
            if plan is None:
                raise AirflowFailException("plan did not finish: nothing was staged or published; see the plan task's log")
            try:
                return catchup.publish(hooks.connection_factory(), plan, context.mapped_states(names.STAGE_BATCH))
            except (catchup.CursorMoved, catchup.StagingIncomplete) as exc:
                raise AirflowFailException(str(exc)) from None

        planned: Any = plan()
        staged = stage_batch.partial(plan=planned[names.PLAN_KEY]).expand(batch=planned)
        staged >> publish(planned[names.PLAN_KEY])

    built: DAG = tidemark_catchup()
    return built
