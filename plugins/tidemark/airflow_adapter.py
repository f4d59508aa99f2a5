"""The one place Tidemark's core meets Airflow: connections, sibling task states and results.

Everything here runs inside a task at run time (never at DAG parse time), so
a DAG file can be imported without a database or an Airflow connection.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from psycopg.conninfo import make_conninfo

from tidemark import timeparse
from tidemark.connection import ConnectionFactory, DatabaseUnreachable, connect
from tidemark.errors import InvalidInput

CONN_ID = "tidemark_timescale"
_PASSTHROUGH_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "options", "target_session_attrs")

F = TypeVar("F", bound=Callable[..., Any])


def connection_factory(conn_id: str = CONN_ID) -> ConnectionFactory:
    """Open connections from the Airflow connection (``AIRFLOW_CONN_TIDEMARK_TIMESCALE``), never from code."""

    def open_connection() -> Any:
        from airflow.sdk import BaseHook

        try:
            c = BaseHook.get_connection(conn_id)
        except Exception as exc:  # noqa: BLE001 - Airflow raises several types for a missing connection
            raise DatabaseUnreachable(
                f"Airflow connection {conn_id!r} is not defined ({type(exc).__name__}); set "
                f"AIRFLOW_CONN_{conn_id.upper()} or create it in the Airflow UI"
            ) from None
        extra = c.extra_dejson or {}
        dbname = c.schema or "postgres"
        conninfo = make_conninfo(
            host=c.host or "127.0.0.1",
            port=c.port or 5432,
            user=c.login or "postgres",
            password=c.password or "",
            dbname=dbname,
            **{k: str(v) for k, v in extra.items() if k in _PASSTHROUGH_EXTRAS},
        )
        return connect(conninfo, label=f"Airflow connection {conn_id!r} -> {c.host}:{c.port}/{dbname}")

    return open_connection


def fail_fast(func: F) -> F:
    """Bad input will not fix itself on retry: fail the task at once with the message."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        try:
            return func(*args, **kwargs)
        except InvalidInput as exc:
            raise AirflowFailException(f"invalid input: {exc}") from None

    return wrapper  # type: ignore[return-value]


INTERVAL_PATTERN = timeparse.INTERVAL_PATTERN  # the parser's own grammar, so form and parser agree


def range_params(*, empty_range_means: str | None, default_interval: str) -> dict[str, Any]:
    """The trigger-form params shared by the backfill and catchup DAGs (JSON-schema validated).

    ``empty_range_means`` explains what an empty start/end stands for; None
    makes them required.
    """
    from airflow.sdk import Param

    from tidemark import datasets

    time_type: Any = ["null", "string"] if empty_range_means else "string"
    empty = f" Empty: {empty_range_means}." if empty_range_means else ""
    return {
        "dataset": Param(
            "ledgers", type="string", enum=datasets.names(), title="Dataset",
            description="The dataset to load (its hypertables and source).",
        ),
        "start": Param(
            None if empty_range_means else "2024-01-01T00:00:00+00:00", type=time_type, format="date-time",
            title="Start (inclusive)",
            description="Beginning of the range, ISO 8601 with offset (e.g. 2024-01-01T00:00:00+00:00)." + empty,
        ),
        "end": Param(
            None if empty_range_means else "2024-01-02T00:00:00+00:00", type=time_type, format="date-time",
            title="End (exclusive)", description="End of the range, ISO 8601 with offset." + empty,
        ),
        "batch_interval": Param(
            default_interval, type="string", minLength=1, pattern=INTERVAL_PATTERN, title="Batch interval",
            description="Time covered by one batch, e.g. '3 hours', '1 day', '30 minutes'. At most 1,024 batches per run.",
        ),
    }


def dagrun_state(dag_id: str, run_id: str) -> str | None:
    """State of another DAG's run, or None if it does not exist."""
    try:
        return _state_text(_ti().get_dagrun_state(dag_id=dag_id, run_id=run_id))
    except Exception:  # noqa: BLE001 - the API answers 404 for an unknown run
        return None


def run_alive(key: str) -> bool:
    """Whether the Tidemark run ``dag_id/run_id`` is still queued or running in Airflow.

    A claim that is not an Airflow run key (another loader's) is not ours to
    judge: it counts as alive until it goes stale.
    """
    dag_id, sep, run_id = key.partition("/")
    if not sep:
        return True
    return dagrun_state(dag_id, run_id) in ("queued", "running")


def _ti() -> Any:
    from airflow.sdk import get_current_context

    return get_current_context()["ti"]


def _state_text(state: Any) -> str | None:
    if state is None:
        return None
    return str(getattr(state, "value", state))


def mapped_states(task_id: str) -> dict[int, str | None]:
    """States of the mapped instances of ``task_id`` in this run, by map index (one API call)."""
    ti = _ti()
    found = ti.get_task_states(dag_id=ti.dag_id, task_ids=[task_id], run_ids=[ti.run_id])
    prefix = f"{task_id}_"
    out: dict[int, str | None] = {}
    for key, state in found.get(ti.run_id, {}).items():
        if key.startswith(prefix) and key[len(prefix):].isdigit():
            out[int(key[len(prefix):])] = _state_text(state)
    return out


def task_state(task_id: str) -> str | None:
    ti = _ti()
    found = ti.get_task_states(dag_id=ti.dag_id, task_ids=[task_id], run_ids=[ti.run_id])
    return _state_text(found.get(ti.run_id, {}).get(task_id))


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

    raise AirflowRescheduleException(datetime.now(timezone.utc) + timedelta(seconds=seconds))


def push(key: str, value: Any) -> None:
    _ti().xcom_push(key=key, value=value)


def run_key() -> str:
    """A run id unique across DAGs, for Tidemark's own bookkeeping."""
    ti = _ti()
    return f"{ti.dag_id}/{ti.run_id}"


def set_map_label(label: str) -> None:
    from airflow.sdk import get_current_context

    get_current_context()["batch_label"] = label  # rendered by map_index_template="{{ batch_label }}"

