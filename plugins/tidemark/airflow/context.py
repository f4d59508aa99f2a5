"""What a running task asks Airflow about its own run: sibling states, results, its run key, how to wait.

Every call goes through the task's execution-API client (``ti``), so it works
the same under a scheduler, a Celery worker and ``airflow dags test``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from tidemark.errors import TidemarkError

log = logging.getLogger(__name__)


class RunStateUnknown(TidemarkError):
    """Airflow could not say whether a run exists: not the same as "it does not"."""


def dagrun_state(dag_id: str, run_id: str) -> str | None:
    """State of another DAG's run, None only if the execution API says definitely that it does not exist.

    Any other failure (API server unreachable or erroring, a refused token,
    a malformed request) raises RunStateUnknown: treating it as "no such run"
    would let a caller drop a live run's claim.
    """
    try:
        return state_text(_ti().get_dagrun_state(dag_id=dag_id, run_id=run_id))
    except Exception as exc:  # noqa: BLE001 - anything but a definite 404 means "unknown", never "gone"
        if _definitely_not_found(exc):
            return None
        raise RunStateUnknown(f"could not read the state of run {dag_id}/{run_id}: {type(exc).__name__}: {exc}") from exc


def _definitely_not_found(exc: BaseException) -> bool:
    """The execution API's own answer for an unknown run: 404 with reason ``not_found`` (a route miss is not one).

    A task under a supervisor gets the answer as AirflowRuntimeError (the
    supervisor relays the HTTP error); in-process (``dag.test``) the client's
    ServerResponseError arrives as is.
    """
    from airflow.sdk.api.client import ServerResponseError
    from airflow.sdk.exceptions import AirflowRuntimeError

    body: Any = None
    if isinstance(exc, AirflowRuntimeError):
        detail = exc.error.detail
        if not isinstance(detail, dict) or detail.get("status_code") != 404:
            return False
        body = detail.get("detail")
    elif isinstance(exc, ServerResponseError):
        if exc.response.status_code != 404:
            return False
        try:
            body = exc.response.json()
        except ValueError:
            return False
    inner = body.get("detail") if isinstance(body, dict) else None
    return isinstance(inner, dict) and inner.get("reason") == "not_found"


def run_alive(key: str) -> bool:
    """Whether the Tidemark run ``dag_id/run_id`` is still queued or running in Airflow.

    A claim that is not an Airflow run key (another loader's) is not ours to
    judge: it counts as alive until it goes stale. So does a run whose state
    Airflow could not tell: the claim stays, and the log says why.
    """
    dag_id, sep, run_id = key.partition("/")
    if not sep:
        return True
    try:
        state = dagrun_state(dag_id, run_id)
    except RunStateUnknown as exc:
        log.warning("%s; counting run %s as alive (its claim stays until it goes stale)", exc, key)
        return True
    return state in ("queued", "running")


def _ti() -> Any:
    from airflow.sdk import get_current_context

    return get_current_context()["ti"]


def state_text(state: Any) -> str | None:
    if state is None:
        return None
    return str(getattr(state, "value", state))


def in_dag_test() -> bool:
    """Whether this task runs inside the process that drives the run (``airflow dags test`` / ``dag.test()``).

    There tasks run one at a time in process, a deferral would run its
    trigger inline (blocking the only worker), and there is no scheduler
    race to avoid, so waits reschedule, briefly. The task runner tells by
    its supervisor channel: in process it is an ``InProcessSupervisorComms``
    instead of a socket to a supervising process.
    """
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms

    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), InProcessSupervisorComms)


def dag_test_wait(seconds: float, cap: float = 1.0) -> float:
    """How long a rescheduling wait lasts: at most ``cap`` seconds under dags test, as asked elsewhere."""
    return min(seconds, cap) if in_dag_test() else seconds


def run_states(task_ids: Iterable[str]) -> dict[str, Any]:
    """States of these tasks' instances in this run, keyed ``task_id`` or ``task_id_<map index>`` (one API call).

    For a caller that needs several tasks' states: pass the result to
    ``mapped_states`` / ``task_state`` instead of asking once per task.
    """
    ti = _ti()
    found = ti.get_task_states(dag_id=ti.dag_id, task_ids=list(task_ids), run_ids=[ti.run_id])
    return dict(found.get(ti.run_id, {}))


def mapped_states(task_id: str, found: dict[str, Any] | None = None) -> dict[int, str | None]:
    """States of the mapped instances of ``task_id`` in this run, by map index (one API call unless ``found``)."""
    if found is None:
        found = run_states([task_id])
    prefix = f"{task_id}_"
    out: dict[int, str | None] = {}
    for key, state in found.items():
        if key.startswith(prefix) and key[len(prefix):].isdigit():
            out[int(key[len(prefix):])] = state_text(state)
    return out


def task_state(task_id: str, found: dict[str, Any] | None = None) -> str | None:
    if found is None:
        found = run_states([task_id])
    return state_text(found.get(task_id))


def mapped_results(task_id: str, indexes: Iterable[int]) -> dict[int, Any]:
    """Return values of the given mapped instances (None where there is none)."""
    wanted = list(indexes)
    if not wanted:
        return {}
    values = _ti().xcom_pull(task_ids=task_id, map_indexes=wanted, default=None)
    return dict(zip(wanted, values))


def pull(task_id: str, key: str = "return_value") -> Any:
    return _ti().xcom_pull(task_ids=task_id, key=key, default=None)


def reschedule(seconds: float) -> None:
    """Put the running (non-sensor) task back to UP_FOR_RESCHEDULE without using a try."""
    from datetime import datetime, timedelta, timezone

    from airflow.sdk.exceptions import AirflowRescheduleException

    raise AirflowRescheduleException(datetime.now(timezone.utc) + timedelta(seconds=seconds))  # type: ignore[no-untyped-call]


def push(key: str, value: Any) -> None:
    _ti().xcom_push(key=key, value=value)


def run_key() -> str:
    """A run id unique across DAGs, for Tidemark's own bookkeeping."""
    ti = _ti()
    return f"{ti.dag_id}/{ti.run_id}"


def set_map_label(label: str) -> None:
    from airflow.sdk import get_current_context

    context: Any = get_current_context()  # a TypedDict without this key: the template reads it anyway
    context["batch_label"] = label  # rendered by map_index_template="{{ batch_label }}"
