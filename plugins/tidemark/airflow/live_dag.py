"""
# Tidemark live

Keeps one dataset current: a dataset whose declaration has a `live:` block (`schedule`, `unit`,
`lag_threshold`) gets its own `tidemark_live__<dataset>`. Every run reads the dataset's **live cursor** (last time fully ingested) and
the source's **tip**, how far its data reaches (sql: the newest time of its query, or `tip_query`; files: the
newest file's latest time; python: its `tip()`; the synthetic source: now):

* **lag below `lag_threshold`**: ingests the complete units after the cursor one by one, each unit
  (`unit`, e.g. 5 minutes) in its own durable transaction together with the cursor move — the cursor
  never runs ahead of the data, and never past a unit that failed;
* **lag at or above the threshold**: triggers the dataset's `tidemark_catchup__<dataset>` for `[cursor, tip)` (rounded down
  to whole units) and stops; while that catchup is queued or running — or failed and not yet
  resolved — live does nothing but log that it waits.

Live never compresses anything: the hypertables' compression policy owns recent chunks.
Schedule: the live block's `schedule`, else `TIDEMARK_LIVE_SCHEDULE` (cron, default every minute).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, dag, get_current_context, task

from tidemark.airflow import context, dag_defaults, hooks, names, params, tasks
from tidemark.config import Settings
from tidemark.declare import catalog
from tidemark.flows import live
from tidemark.model.dataset import Dataset
from tidemark.model.schedule import Live
from tidemark.model.timeparse import format_interval, parse_instant

__all__ = ["live_dag"]

log = logging.getLogger("tidemark.dag")

DOC = __doc__
# The decision decide pushed, as a template expression (left open: the caller picks a field and closes it).
_DECISION = "{{ ti.xcom_pull(task_ids='" + names.DECIDE + "', key='" + names.DECISION + "')"


def _tip(params: dict[str, Any]) -> datetime | None:
    return parse_instant(params["tip"]) if params.get("tip") else None  # None: the source's own tip


def live_dag(settings: Settings, dataset: Dataset, *, register: bool = True) -> DAG:
    """A dataset's live DAG (``tidemark_live__<name>``): decide, then ingest units or hand the lag to its catchup DAG.

    Only a dataset whose declaration has a ``live:`` block gets one: its
    schedule (else ``TIDEMARK_LIVE_SCHEDULE``), unit and lag threshold are the
    defaults here, so a team keeps several datasets live, each at its own pace.
    """
    spec = dataset.live or Live()
    name = dataset.name
    catchup_dag_id = names.dag_id("catchup", name)

    @dag(
        **dag_defaults.common(settings, "live", dataset, "Keep a dataset current, handing a lag over to catchup",
                             register=register),
        doc_md=dag_defaults.doc_for(DOC, dataset),
        schedule=spec.schedule or settings.live_schedule,
        max_active_runs=1,
        params={
            "unit": Param(format_interval(spec.unit), type="string", pattern=params.INTERVAL_PATTERN, title="Unit",
                          description="Data ingested per transaction (e.g. '5 minutes')."),
            "lag_threshold": Param(format_interval(spec.lag_threshold), type="string", pattern=params.INTERVAL_PATTERN,
                                   title="Lag threshold",
                                   description=f"At or above this lag, hand the lag over to {catchup_dag_id}."),
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
        @task.branch(task_id=names.DECIDE, task_display_name="Decide: ingest, hand over or wait")
        @tasks.fail_fast
        def decide() -> list[str]:
            params = get_current_context()["params"]
            decision = live.decide(
                hooks.connection_factory(), catalog.get(name).name, tip=_tip(params), unit=params["unit"],
                threshold=params["lag_threshold"], catchup_batch_interval=params["catchup_batch_interval"],
                catchup_state=lambda run_id: context.dagrun_state(catchup_dag_id, run_id),
            )
            log.info("live %s: cursor %s, tip %s -> %s (%s)", name, decision.cursor.isoformat(),
                     decision.tip.isoformat(), decision.action, decision.reason)
            # The threshold goes with it, so the Tidemark tab draws the lag against what this run used.
            context.push(names.DECISION, {**decision.to_dict(), "lag_threshold": params["lag_threshold"]})
            return {"ingest": [names.INGEST], "catchup": [names.TRIGGER_CATCHUP]}.get(decision.action, [])

        @task(task_id=names.INGEST, task_display_name="Ingest units")
        @tasks.fail_fast
        def ingest_units() -> dict[str, Any]:
            params = get_current_context()["params"]
            decision = context.pull(names.DECIDE, key=names.DECISION)
            return live.ingest(hooks.connection_factory(), decision["dataset"], tip=parse_instant(decision["tip"]),
                               unit=params["unit"], max_units=params["max_units"], run_id=context.run_key())

        trigger = TriggerDagRunOperator(
            task_id=names.TRIGGER_CATCHUP,
            task_display_name="Hand over to catchup",
            trigger_dag_id=catchup_dag_id,
            trigger_run_id=_DECISION + "['catchup_run_id'] }}",
            conf={
                key: _DECISION + "['catchup_conf']['" + key + "'] }}"
                for key in ("dataset", "start", "end", "batch_interval")
            },
            skip_when_already_exists=True,
            wait_for_completion=False,
        )

        decide() >> [ingest_units(), trigger]

    built: DAG = tidemark_live()
    return built
