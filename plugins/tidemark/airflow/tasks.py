"""How a Tidemark task fails: bad input at once and for good, everything else through Airflow's retries."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from tidemark.airflow import context, heap, names
from tidemark.errors import InvalidInput
from tidemark.model.batch import Batch
from tidemark.model.payloads import BatchPayload, Planned, PlanPayload
from tidemark.model.run_plan import RunPlan

F = TypeVar("F", bound=Callable[..., Any])


def fail_fast(func: F) -> F:
    """Bad input will not fix itself on retry: fail the task at once with the message."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        heap.freeze_before_task()
        try:
            return func(*args, **kwargs)
        except InvalidInput as exc:
            raise AirflowFailException(f"invalid input: {exc}") from None

    return wrapper  # type: ignore[return-value]


def hand_over(planned: Planned) -> list[BatchPayload]:
    """The plan task's two outputs: the batches as its return value, the plan under ``names.PLAN_KEY``.

    Airflow maps a task only over a return value (never over one key of
    ``multiple_outputs``), so the batches are returned and the plan is pushed
    beside them; the DAG hands ``plan()[names.PLAN_KEY]`` to every later task
    as an XComArg, a declared dependency rather than a pull by task id.
    """
    context.push(names.PLAN_KEY, planned["plan"])
    return planned["batches"]


def this_batch(plan: PlanPayload, batch: BatchPayload) -> tuple[RunPlan, Batch]:
    """A mapped task's plan and batch, read back from XCom, checked against each other and shown as its name."""
    run = RunPlan.of(plan)
    b = run.batch_of(batch)
    context.set_map_label(b.label)
    return run, b
