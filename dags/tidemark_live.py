"""
# Tidemark live

Keeps a dataset current. Every run reads the dataset's **live cursor** (last time fully ingested) and
the source's **tip**, how far its data reaches (sql: the newest time of its query, or `tip_query`; files: the
newest file's latest time; python: its `tip()`; the synthetic source: now):

* **lag below `lag_threshold`**: ingests the complete units after the cursor one by one, each unit
  (`unit`, e.g. 5 minutes) in its own durable transaction together with the cursor move — the cursor
  never runs ahead of the data, and never past a unit that failed;
* **lag at or above the threshold**: triggers `tidemark_catchup` for `[cursor, tip)` (rounded down
  to whole units) and stops; while that catchup is queued or running — or failed and not yet
  resolved — live does nothing but log that it waits.

Live never compresses anything: the hypertables' compression policy owns recent chunks.
Schedule: `TIDEMARK_LIVE_SCHEDULE` (cron, default every minute).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task

from tidemark.airflow import context
from tidemark.airflow import hooks
from tidemark.airflow import params
from tidemark.airflow import tasks
from tidemark.airflow import wiring
from tidemark.declare import catalog
from tidemark.flows import live
from tidemark import config as settings
from tidemark.model.timeparse import parse_instant

log = logging.getLogger("tidemark.dag")

CATCHUP_DAG = "tidemark_catchup"
SETTINGS = settings.load()  # a bad TIDEMARK_* value fails the import with a message naming it
wiring.use_dags_folder(Path(__file__).parent)  # datasets/ declarations next to this file; sources' connections


def _tip(params: dict) -> datetime | None:
    return parse_instant(params["tip"]) if params.get("tip") else None  # None: the source's own tip


@dag(
    dag_id=Path(__file__).stem,
    dag_display_name="Tidemark live",
    doc_md=__doc__,
    schedule=SETTINGS.live_schedule,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["tidemark", "timescaledb"],
    default_args=SETTINGS.task_retries(),  # every task: TIDEMARK_RETRIES after TIDEMARK_RETRY_DELAY
    params={
        "dataset": Param("ledgers", type="string", enum=catalog.names(), title="Dataset",
                         description="The dataset to keep current."),
        "unit": Param("5 minutes", type="string", pattern=params.INTERVAL_PATTERN, title="Unit",
                      description="Data ingested per transaction (e.g. '5 minutes')."),
        "lag_threshold": Param("1 hour", type="string", pattern=params.INTERVAL_PATTERN, title="Lag threshold",
                               description="At or above this lag, hand the lag over to tidemark_catchup."),
        "max_units": Param(12, type="integer", minimum=1, maximum=1000, title="Units per run",
                           description="At most this many units are ingested by one run."),
        "catchup_batch_interval": Param("15 minutes", type="string", pattern=params.INTERVAL_PATTERN,
                                        title="Catchup batch interval",
                                        description="batch_interval passed to the catchup it triggers."),
        "tip": Param(None, type=["null", "string"], format="date-time", title="Source tip override",
                     description="Pretend the source's tip is this time (drills and tests). Empty: ask the source."),
    },
)
def tidemark_live() -> None:
    @task.branch(task_display_name="Decide: ingest, hand over or wait")
    @tasks.fail_fast
    def decide() -> list[str]:
        params = get_current_context()["params"]
        dataset = catalog.get(params["dataset"]).name
        decision = live.decide(
            hooks.connection_factory(), dataset, tip=_tip(params), unit=params["unit"],
            threshold=params["lag_threshold"], catchup_batch_interval=params["catchup_batch_interval"],
            catchup_state=lambda run_id: context.dagrun_state(CATCHUP_DAG, run_id),
        )
        log.info("live %s: cursor %s, tip %s -> %s (%s)", dataset, decision.cursor.isoformat(),
                 decision.tip.isoformat(), decision.action, decision.reason)
        context.push("decision", decision.to_dict())
        return {"ingest": ["ingest_units"], "catchup": ["trigger_catchup"]}.get(decision.action, [])

    @task(task_display_name="Ingest units")
    def ingest_units() -> dict:
        params = get_current_context()["params"]
        decision = context.pull("decide", key="decision")
        return live.ingest(hooks.connection_factory(), decision["dataset"], tip=parse_instant(decision["tip"]),
                           unit=params["unit"], max_units=params["max_units"], run_id=context.run_key())

    trigger = TriggerDagRunOperator(
        task_id="trigger_catchup",
        task_display_name="Hand over to catchup",
        trigger_dag_id=CATCHUP_DAG,
        trigger_run_id="{{ ti.xcom_pull(task_ids='decide', key='decision')['catchup_run_id'] }}",
        conf={
            key: "{{ ti.xcom_pull(task_ids='decide', key='decision')['catchup_conf']['" + key + "'] }}"
            for key in ("dataset", "start", "end", "batch_interval")
        },
        skip_when_already_exists=True,
        wait_for_completion=False,
    )

    decide() >> [ingest_units(), trigger]


tidemark_live()
