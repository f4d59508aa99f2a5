"""The backfill's sensor and its trigger: progressive compression that waits without polling tasks.

Batches compress the chunks they complete themselves (``backfill.insert_batch``),
so the sensor has one job left: notice when every batch has settled (loaded
or failed for good), compress what is left and pass or fail the run. It pokes
once; if the batches are still loading it *defers* to ``BatchesSettledTrigger``,
which asks the Execution API for the batches' states every second from the
triggerer, without a task process and without the reschedule cycle that trips
apache/airflow#71172 under a scheduler with short poke intervals.

Under ``airflow dags test`` / ``dag.test()`` a trigger runs inline, blocking
the only worker while the batches it waits for cannot run, so there the
sensor reschedules instead (no scheduler, no race): due again at once while
the batches left are about to run, else after a second.
``TIDEMARK_SENSOR_DEFERRABLE=false`` forces rescheduling everywhere, e.g. for
a deployment without a triggerer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from tidemark.airflow import context

from tidemark.airflow import hooks
from tidemark.flows import backfill
from tidemark.model import payloads

# Task states after which a batch will not change without a human (or a retry that is not pending).
SETTLED = frozenset({"success", "failed", "upstream_failed", "removed", "skipped"})
DAG_TEST_POKE_SECONDS = 1.0
# Under dags test: states whose batches run in dag.test's next pass over the run, without any delay.
_RUN_NEXT = frozenset({None, "none", "scheduled", "queued"})


def dag_test_poke_seconds(states: dict[int, str | None], expected: int) -> float:
    """How long the sensor waits under ``dags test`` before it pokes again.

    dag.test runs, pass after pass, every task that is due when the pass
    starts, and sleeps a whole second when none is. While the batches left
    are all about to run (scheduled, nothing delays them), the sensor is due
    at once: it then pokes again right after them in the next pass instead of
    being not yet due when they are done (an idle second of the whole run).
    A batch waiting out a reschedule or a retry delay keeps the one-second
    wait, so the sensor does not poke over and over meanwhile; so does a
    watermark that is short with every batch settled.
    """
    pending = [states.get(i) for i in range(expected) if states.get(i) not in SETTLED]
    return 0.0 if pending and all(s in _RUN_NEXT for s in pending) else DAG_TEST_POKE_SECONDS


class BatchesSettledTrigger(BaseTrigger):
    """Fires once every mapped instance of ``task_id`` in the run has settled, or after ``max_wait``."""

    def __init__(
        self, dag_id: str, run_id: str, task_id: str, expected: int, poll_interval: float = 1.0,
        max_wait: float = 300.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        # Not self.task_id: the triggerer sets that to the deferred task's own id.
        self.dag_id, self.run_id, self.watched_task = dag_id, run_id, task_id
        self.expected, self.poll_interval, self.max_wait = expected, poll_interval, max_wait

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.watched_task, "expected": self.expected,
             "poll_interval": self.poll_interval, "max_wait": self.max_wait},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        deadline = time.monotonic() + self.max_wait
        last_log = 0.0
        while True:
            found = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=self.dag_id, task_ids=[self.watched_task], run_ids=[str(self.run_id)]
            )
            states = [context.state_text(s) or "" for k, s in found.get(self.run_id, {}).items()
                      if k.startswith(f"{self.watched_task}_")]
            if time.monotonic() - last_log > 30:
                last_log = time.monotonic()
                self.log.info("%d of %d batches settled", sum(s in SETTLED for s in states), self.expected)
            if len(states) >= self.expected and all(s in SETTLED for s in states):
                yield TriggerEvent({"settled": True})  # type: ignore[no-untyped-call]
                return
            if time.monotonic() >= deadline:
                yield TriggerEvent({"settled": False})  # type: ignore[no-untyped-call]
                return
            await asyncio.sleep(self.poll_interval)


class ProgressiveRecompressSensor(BaseSensorOperator):
    """Advance the watermark, compress behind it; done when every batch is in the prefix."""

    template_fields: Sequence[str] = ("batches", "summary")

    def __init__(self, *, batches: Any, summary: Any, deferrable: bool = True, settle_wait: float = 300.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches, self.summary = batches, summary
        # settle_wait: the longest one deferral lasts before the sensor pokes again (a heartbeat).
        self.deferrable, self.settle_wait = deferrable, settle_wait
        self._settled = False

    def execute(self, context: Any, event: Any = None) -> Any:
        # Resumed by the trigger with every batch settled: if the watermark is still short, the next
        # wait is a reschedule, not another deferral that would fire at once.
        self._settled = bool(isinstance(event, dict) and event.get("settled"))
        return super().execute(context)

    def poke(self, context: Any) -> bool | PokeReturnValue:
        batches = self.batches or []
        summary = payloads.check_summary(self.summary or {})
        if summary.get("dry_run") or not batches:
            return PokeReturnValue(is_done=True)
        batches = [payloads.check_batch(b) for b in batches]
        states = context.mapped_states("insert_batch")
        outcome = backfill.poke(
            hooks.connection_factory(), summary, batches, states,
            lambda indexes: context.mapped_results("insert_batch", indexes),
        )
        self.log.info(outcome.line())
        if outcome.failed:
            raise AirflowFailException(backfill.failure_message(summary, outcome.failed, batches))
        if outcome.done:
            return PokeReturnValue(is_done=True)
        if context.in_dag_test():
            self.poke_interval = dag_test_poke_seconds(states, len(batches))  # read by the reschedule below
        elif self.deferrable and not self._settled:
            ti = context["ti"]
            self.log.info("waiting in the triggerer until every batch has settled")
            self.defer(
                trigger=BatchesSettledTrigger(ti.dag_id, ti.run_id, "insert_batch", len(batches), 1.0, self.settle_wait),
                method_name="execute",
            )
        return PokeReturnValue(is_done=False)
