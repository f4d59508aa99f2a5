"""The backfill's sensor: progressive compression that waits without polling tasks.

Batches compress the chunks they complete themselves (``backfill.insert_batch``),
so the sensor has one job left: notice when every batch has settled (loaded
or failed for good), compress what is left and pass or fail the run. It pokes
once; if the batches are still loading it *defers* to ``BatchesSettledTrigger``
(``tidemark.airflow.triggers``), which asks the Execution API for the batches'
states every second from the triggerer, without a task process and without the reschedule cycle that trips
apache/airflow#71172 under a scheduler with short poke intervals.

Under ``airflow dags test`` / ``dag.test()`` a trigger runs inline, blocking
the only worker while the batches it waits for cannot run, so there the
sensor reschedules instead (no scheduler, no race): due again at once while
the batches left are about to run, else after a second.
``TIDEMARK_SENSOR_DEFERRABLE=false`` forces rescheduling everywhere, e.g. for
a deployment without a triggerer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException

from tidemark.airflow import context, hooks, names
from tidemark.airflow.triggers import SETTLED, BatchesSettledTrigger
from tidemark.flows import progressive
from tidemark.model.run_plan import RunPlan

__all__ = ["ProgressiveCompressionSensor", "dag_test_poke_seconds"]

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


class ProgressiveCompressionSensor(BaseSensorOperator):
    """Advance the watermark, compress behind it; done when every batch is in the prefix."""

    template_fields: Sequence[str] = ("plan",)

    def __init__(self, *, plan: Any, deferrable: bool = True, settle_wait: float = 300.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        # settle_wait: the longest one deferral lasts before the sensor pokes again (a heartbeat).
        self.deferrable, self.settle_wait = deferrable, settle_wait
        self._settled = False

    def execute(self, context: Any, event: Any = None) -> Any:
        # Resumed by the trigger with every batch settled: if the watermark is still short, the next
        # wait is a reschedule, not another deferral that would fire at once.
        self._settled = bool(isinstance(event, dict) and event.get("settled"))
        return super().execute(context)

    def poke(self, ctx: Any) -> bool | PokeReturnValue:
        run = RunPlan.of(self.plan)
        if run.dry_run or not run.batches:
            return PokeReturnValue(is_done=True)
        states = context.mapped_states(names.INSERT_BATCH)
        outcome = progressive.poke(hooks.connection_factory(), run, states)
        self.log.info(outcome.line())
        if outcome.failed:
            raise AirflowFailException(progressive.failure_message(run, outcome.failed))
        if outcome.done:
            return PokeReturnValue(is_done=True)
        if context.in_dag_test():
            self.poke_interval = dag_test_poke_seconds(states, len(run.batches))  # read by the reschedule below
        elif self.deferrable and not self._settled:
            ti = ctx["ti"]
            self.log.info("waiting in the triggerer until every batch has settled")
            self.defer(
                trigger=BatchesSettledTrigger(ti.dag_id, ti.run_id, names.INSERT_BATCH, len(run.batches), 1.0,
                                              self.settle_wait),
                method_name="execute",
            )
        return PokeReturnValue(is_done=False)
