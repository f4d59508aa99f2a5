"""The one place Tidemark's core meets Airflow: connections, sibling task states and results.

Everything here runs inside a task at run time (never at DAG parse time), so
a DAG file can be imported without a database or an Airflow connection.
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from tidemark import timeparse
from tidemark.connection import ConnectionFactory, DatabaseUnreachable, redact
from tidemark.errors import InvalidInput, TidemarkError

CONN_ID = "tidemark_timescale"
# What the embedded engine needs and Tidemark's code assumes, whatever the connection's extras say:
# no server-side prepares (one shared session), autocommit (explicit transaction blocks only).
_FORCED: dict[str, Any] = {"prepare_threshold": None, "autocommit": True}
# Defaults the connection's extras may override.
_DEFAULTS: dict[str, Any] = {"connect_timeout": 10, "application_name": "tidemark"}

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)


def connection_factory(conn_id: str = CONN_ID) -> ConnectionFactory:
    """Open psycopg 3 connections for the Airflow connection ``conn_id`` the way every Postgres task does.

    The provider's ``PostgresHook`` builds them, so a ``postgres`` connection
    behaves as users expect from any other Postgres task: ``sslmode`` and the
    certificate extras, ``options``, ``client_encoding``, IAM authentication
    for RDS/Aurora/Redshift (``"iam": true`` extras), and any other libpq
    parameter in the extras. Tidemark adds only what it needs on top (see
    ``_FORCED``). The Airflow connection is looked up once per factory; every
    call opens a new connection (IAM tokens are generated per connection).
    """
    hook: Any = None

    def open_connection() -> psycopg.Connection:
        from airflow.sdk.exceptions import AirflowOptionalProviderFeatureException

        nonlocal hook
        if hook is None:
            hook = _hook(conn_id)
        c = hook.connection
        label = f"Airflow connection {conn_id!r} -> {c.host}:{c.port}/{hook.database or c.schema}"
        try:
            conn = hook.get_conn()
        except psycopg.OperationalError as exc:
            text = redact(str(exc)).strip()
            first_line = text.splitlines()[0] if text else type(exc).__name__
            raise DatabaseUnreachable(f"cannot connect to the database ({label}): {first_line}") from None
        except (ImportError, AirflowOptionalProviderFeatureException) as exc:  # IAM extras need another provider
            raise DatabaseUnreachable(
                f"cannot connect to the database ({label}): its extras ask for IAM authentication, which needs an "
                f"Airflow provider that is not installed: {exc}; install apache-airflow-providers-amazon (RDS, Aurora, "
                "Redshift) or apache-airflow-providers-microsoft-azure"
            ) from None
        if not isinstance(conn, psycopg.Connection):
            conn.close()
            raise DatabaseUnreachable(
                f"PostgresHook handed out a {type(conn).__module__} connection for {label}; Tidemark needs psycopg 3 "
                "(install psycopg and SQLAlchemy 2, as requirements.txt pins them)"
            )
        conn.autocommit = True
        conn.prepare_threshold = None
        return conn

    return open_connection


def _hook(conn_id: str) -> Any:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    class TidemarkPostgresHook(PostgresHook):
        """PostgresHook with Tidemark's connection options added to whatever the connection's extras say."""

        def _create_connection(self, conn_args: dict[str, Any]) -> Any:
            return super()._create_connection({**_DEFAULTS, **conn_args, **_FORCED})

    hook = TidemarkPostgresHook(postgres_conn_id=conn_id)
    try:
        hook.connection  # noqa: B018 - fetch it now: a missing connection must say so, not fail later
    except Exception as exc:  # noqa: BLE001 - Airflow raises several types for a missing connection
        raise DatabaseUnreachable(
            f"Airflow connection {conn_id!r} is not defined ({type(exc).__name__}); set "
            f"AIRFLOW_CONN_{conn_id.upper()} or create it in the Airflow UI"
        ) from None
    return hook


def fail_fast(func: F) -> F:
    """Bad input will not fix itself on retry: fail the task at once with the message."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        _freeze_before_task()
        try:
            return func(*args, **kwargs)
        except InvalidInput as exc:
            raise AirflowFailException(f"invalid input: {exc}") from None

    return wrapper  # type: ignore[return-value]


INTERVAL_PATTERN = timeparse.INTERVAL_PATTERN  # the parser's own grammar, so form and parser agree


AUTO_INTERVAL_PATTERN = r"^\s*[Aa][Uu][Tt][Oo]\s*$|" + INTERVAL_PATTERN


def range_params(*, empty_range_means: str | None, default_interval: str, allow_auto: bool = False) -> dict[str, Any]:
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
            default_interval, type="string", minLength=1,
            pattern=AUTO_INTERVAL_PATTERN if allow_auto else INTERVAL_PATTERN, title="Batch interval",
            description=(
                "'auto' (sized from the source's density: about 250,000 rows per batch, whole chunks) or the time "
                "covered by one batch, e.g. '3 hours', '1 day', '30 minutes'. At most 1,024 batches per run."
                if allow_auto else
                "Time covered by one batch, e.g. '3 hours', '1 day', '30 minutes'. At most 1,024 batches per run."
            ),
        ),
    }


class RunStateUnknown(TidemarkError):
    """Airflow could not say whether a run exists: not the same as "it does not"."""


def dagrun_state(dag_id: str, run_id: str) -> str | None:
    """State of another DAG's run, None only if the execution API says definitely that it does not exist.

    Any other failure (API server unreachable or erroring, a refused token,
    a malformed request) raises RunStateUnknown: treating it as "no such run"
    would let a caller drop a live run's claim.
    """
    try:
        return _state_text(_ti().get_dagrun_state(dag_id=dag_id, run_id=run_id))
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


def _state_text(state: Any) -> str | None:
    if state is None:
        return None
    return str(getattr(state, "value", state))


state_text = _state_text


def in_dag_test() -> bool:
    """Whether this task runs under ``airflow dags test`` / ``dag.test()``: one task at a time, in process.

    There a deferral runs its trigger inline (blocking the only worker) and
    there is no scheduler race to avoid, so waits reschedule, briefly.
    """
    from airflow.sdk import get_current_context

    run = get_current_context().get("dag_run")
    return getattr(run, "triggering_user_name", None) == "dag_test"


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
            out[int(key[len(prefix):])] = _state_text(state)
    return out


def task_state(task_id: str, found: dict[str, Any] | None = None) -> str | None:
    if found is None:
        found = run_states([task_id])
    return _state_text(found.get(task_id))


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



def _object_storage(url: str) -> tuple[Any, str]:
    """(file system, path) through Airflow's ObjectStoragePath, so ``s3://conn_id@bucket/...`` uses that connection."""
    if "://" not in url:
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), url
    from airflow.sdk import ObjectStoragePath

    p = ObjectStoragePath(url)
    return p.fs, p.path


def use_dags_folder(folder: Path) -> None:
    """Wire the core to Airflow for this DAG folder: its ``datasets/`` declarations, connections, object storage.

    Called by each DAG file at import (no database or connection is touched
    here): the same process later runs the tasks, which then open user
    sources' connections through PostgresHook and their files through
    ObjectStoragePath.
    """
    from tidemark import catalog
    from tidemark.sources import access

    catalog.add_search_dir(folder / "datasets")
    access.set_openers(connections=connection_factory, filesystems=_object_storage)
    _skip_collections_at_exit()
    _freeze_if_parsed_to_run()


_exit_hook_registered = False


def _freeze_if_parsed_to_run() -> None:
    """Keep the garbage collector off the heap a process built before it runs a task of this DAG.

    Airflow sets the parsing context's ``dag_id`` only in processes that
    parse the DAG folder in order to run one DAG and then end: a task
    runner (which leaves with ``os._exit``) and the CLI (``airflow dags
    test``, ``tasks test``). By then such a process holds Airflow's whole
    import graph (~400,000 objects, nearly all of it alive until exit), and
    every full collection after that re-traversed it: under ``dags test``
    six of them, 0.12-0.38 s each, 1.4 s in all. Frozen, they traverse only
    what was allocated since. A dag-processor child, the scheduler, the
    triggerer or a test session parses without that context and is left
    alone.
    """
    global _parsed_to_run
    from airflow.sdk import get_parsing_context

    if get_parsing_context().dag_id is not None:
        _parsed_to_run = True
        gc.freeze()


_parsed_to_run = False


def _freeze_before_task() -> None:
    """In such a process, freeze again as a task starts: Airflow's own start of the task is behind it too.

    Under ``dags test`` the first task builds the in-process execution API
    (~300,000 objects) before its callable runs; the batches' collections
    then skip those as well.
    """
    if _parsed_to_run:
        gc.freeze()


def _skip_collections_at_exit() -> None:
    """Spare the process that parsed the DAGs CPython's garbage collection passes at interpreter exit.

    Tearing the interpreter down, CPython runs full cyclic collections over
    every object still alive; in a process that imported Airflow and ran
    tasks (``airflow dags test``: the execution API's FastAPI app and its
    pydantic schemas, ~700,000 objects) that took 1.4-1.6 s after the last
    task, a tenth of the whole command. Freezing the heap in an atexit hook
    moves those objects out of the collector's reach; the operating system
    frees them with the process. Every atexit handler still runs (logging
    flush, ORM dispose, the execution API's loop shutdown), and so does
    reference-count deallocation; only finalizers of objects caught in
    reference cycles at shutdown do not run, which CPython does not promise
    anyway.
    """
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        atexit.register(gc.freeze)
