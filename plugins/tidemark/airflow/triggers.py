"""The trigger the backfill's sensor defers to: every batch settled, seen from the triggerer.

It asks the Execution API for the batches' states every second, without a
task process and without the reschedule cycle that trips apache/airflow#71172
under a scheduler with short poke intervals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tidemark.airflow import context

__all__ = ["SETTLED", "BatchesSettledTrigger"]

# Task states after which a batch will not change without a human (or a retry that is not pending).
SETTLED = frozenset({"success", "failed", "upstream_failed", "removed", "skipped"})


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
