"""The FastAPI app behind the Tidemark tab and nav page, mounted by the plugin at ``/tidemark``.

Airflow does not protect plugin apps: every route here depends on Airflow's
own auth-manager dependencies (the UI's ``_token`` cookie, which the iframe
sends because it is same-origin, or a Bearer token), so an anonymous request
gets 401 and a user without read access to the DAG's runs gets 403.

Read-only. Responses carry numbers and Tidemark's report, never the
connection's URI, host or password, nor query text: a database error becomes
a fixed message naming only the Airflow connection id.
"""

# No `from __future__ import annotations`: FastAPI must see the dependency types, imported inside create_app.
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from tidemark.airflow import names
from tidemark.state import history, progress
from tidemark.connection import DatabaseUnreachable

STATIC = Path(__file__).resolve().parent / "static"
RUNNING_STATES = ("queued", "running")
# The refused declarations a page lists: each message is already bounded; a folder of broken files is not.
MAX_REFUSED = 100
MAX_MESSAGE = 2000


class _Database:
    """One long-lived autocommit connection, used by one refresh at a time.

    Reusing it keeps a refresh to its few statements: opening a connection per
    refresh would cost the (single-session) embedded engine a login each time.
    """

    def __init__(self, factory: Callable[[], psycopg.Connection]) -> None:
        self._factory = factory
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._factory()
            try:
                yield self._conn
            except psycopg.OperationalError:
                self._conn.close()
                self._conn = None
                raise


def _default_factory() -> psycopg.Connection:
    from tidemark.airflow.hooks import connection_factory

    return connection_factory()()


def refused_declarations(dags_folder: Path) -> list[str]:
    """The declarations the DAG processor refuses, as this process (the API server) sees them.

    Nothing here imports a DAG file, so what they do is done here: the same
    settings, the demo where ``TIDEMARK_DEMO`` is on (its dataset and tables
    decide clashes), and the ``datasets/`` folder next to the DAG files
    (``AIRFLOW__CORE__DAGS_FOLDER`` may be set only in airflow.cfg, which the
    catalogue does not read). A bad setting is what the DAG files fail on too.
    """
    from tidemark import config, demo
    from tidemark.declare import catalog
    from tidemark.declare.strict_yaml import cut

    try:
        if config.load().demo:
            demo.enable()
    except config.InvalidSetting as exc:
        return [cut(str(exc), MAX_MESSAGE)]
    catalog.add_search_dir(dags_folder / "datasets")
    messages = [cut(r.message, MAX_MESSAGE) for r in catalog.errors()]
    if len(messages) > MAX_REFUSED:
        messages = [*messages[:MAX_REFUSED], f"… and {len(messages) - MAX_REFUSED} more (the DAG import error lists all)"]
    return messages


def plan_windows(plan: Any) -> list[progress.WindowInfo]:
    """The plan's windows in time order (its batches and the windows it skipped as loaded), for the status strip."""
    from tidemark.model.batch import Batch
    from tidemark.model.run_plan import RunPlan

    if not isinstance(plan, dict):
        return []
    try:
        run = RunPlan.of(plan)
    except Exception:  # noqa: BLE001 - a plan from another version: the strip falls back to the task instances
        return []
    cells = [progress.WindowInfo(b.start, b.end, b.label, b.index) for b in run.batches]
    cells += [progress.WindowInfo(s, e, Batch(0, s, e).label) for s, e in run.skipped]
    return sorted(cells, key=lambda w: w.start)


def create_app(factory: Callable[[], psycopg.Connection] | None = None) -> FastAPI:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.configuration import conf
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    db = _Database(factory or _default_factory)
    app = FastAPI(title="Tidemark", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def _no_store_no_sniff(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # Every response, JSON and errors too: run data is not for shared caches, nor a type to be guessed.
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
    read_runs = Depends(requires_access_dag("GET", DagAccessEntity.RUN))

    def query(fn: Callable[[psycopg.Connection], Any]) -> tuple[Any, float]:
        """Run the reads and return (result, milliseconds the database was busy for us)."""
        try:
            with db.connection() as conn:
                t0 = time.perf_counter()
                result = fn(conn)
                return result, (time.perf_counter() - t0) * 1000
        except (psycopg.Error, OSError, DatabaseUnreachable) as exc:  # their text may name the host: not passed on
            raise HTTPException(
                503, f"Tidemark's database (Airflow connection 'tidemark_timescale') is unavailable: {type(exc).__name__}"
            ) from None

    def xcom(session: Any, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        row = session.execute(
            select(XComModel.value).where(
                XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id == task_id,
                XComModel.key == key, XComModel.map_index == -1,
            )
        ).first()
        return XComModel.deserialize_value(row) if row else None

    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    @app.get("/run", dependencies=[read_runs])
    def run_page() -> FileResponse:
        return page("run.html")

    @app.get("/runs", dependencies=[read_runs])
    def runs_page() -> FileResponse:
        return page("runs.html")

    @app.get("/static/{name}", dependencies=[read_runs])
    def static(name: str) -> FileResponse:
        if name not in {p.name for p in STATIC.iterdir()}:
            raise HTTPException(404, "not found")
        return page(name)

    @app.get("/api/runs", dependencies=[read_runs])
    def recent(user: GetUserDep, limit: int = 50, dataset: str | None = None, state: str | None = None) -> JSONResponse:
        def read(conn: psycopg.Connection) -> tuple[list[dict[str, Any]], list[str]]:
            found = history.recent_runs(conn, max(1, min(limit, 200)), dataset=dataset, state=state)
            return found, history.datasets_with_runs(conn)

        (rows, datasets), ms = query(read)
        manager = get_auth_manager()
        allowed = {
            dag_id for dag_id in {r["dag_id"] for r in rows if r["dag_id"]}
            if manager.is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                         details=DagDetails(id=dag_id), user=user)
        }
        rows = [r for r in rows if r["dag_id"] in allowed]
        return JSONResponse({"runs": rows, "datasets": datasets, "filter": {"dataset": dataset, "state": state},
                             "db_ms": round(ms, 2)})

    @app.get("/api/declarations", dependencies=[read_runs])
    def declarations() -> JSONResponse:
        return JSONResponse({"refused": refused_declarations(Path(conf.get("core", "dags_folder")))})

    @app.get("/api/dags/{dag_id}/runs/{run_id}", dependencies=[read_runs])
    def run(dag_id: str, run_id: str, session: SessionDep) -> JSONResponse:
        dag_run = session.execute(
            select(DagRun.state, DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        ).first()
        if dag_run is None:
            raise HTTPException(404, f"DAG run {dag_id}/{run_id} not found")
        airflow_state = str(getattr(dag_run.state, "value", dag_run.state))
        base: dict[str, Any] = {"dag_id": dag_id, "dag_run_id": run_id, "airflow_state": airflow_state,
                                "refresh": airflow_state in RUNNING_STATES}
        kind = names.kind_of(dag_id)
        if kind is None:
            raise HTTPException(404, f"{dag_id} is not a Tidemark DAG")
        if kind == "live":
            return JSONResponse({**base, **live(dag_id, run_id, dict(dag_run.conf or {}), session)})
        ti_columns: list[Any] = [TaskInstance.map_index, TaskInstance.state, TaskInstance.rendered_map_index,
                                 TaskInstance.try_number]
        tasks = [
            progress.TaskInfo(int(i), str(getattr(s, "value", s)) if s is not None else None, label, int(tries or 0))
            for i, s, label, tries in session.execute(
                select(*ti_columns).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id,
                    TaskInstance.task_id == names.BATCH_TASK[kind], TaskInstance.map_index >= 0,
                )
            ).all()
        ]
        plan = xcom(session, dag_id, run_id, names.PLAN, names.PLAN_KEY)
        staging = plan.get("staging") if kind == "catchup" and isinstance(plan, dict) else None
        windows = plan_windows(plan)
        conf = dict(dag_run.conf or {})
        view, ms = query(lambda conn: progress.run_view(conn, f"{dag_id}/{run_id}", tasks, staging=staging,
                                                        windows=windows, conf=conf))
        if view is None:
            # Queued, or planning has not claimed the window yet: nothing recorded, but not an error.
            if airflow_state in RUNNING_STATES:
                return JSONResponse({**base, "kind": None, "pending": True, "db_ms": round(ms, 2)})
            raise HTTPException(404, f"Tidemark has no record of run {dag_id}/{run_id}")
        return JSONResponse({**base, **view, "batch_task_id": names.BATCH_TASK[kind], "db_ms": round(ms, 2)})

    def live(dag_id: str, run_id: str, conf: dict[str, Any], session: Any) -> dict[str, Any]:
        from tidemark.model.timeparse import parse_instant, parse_interval

        decision = xcom(session, dag_id, run_id, names.DECIDE, names.DECISION)
        dataset = (decision or {}).get("dataset") or names.dataset_of(dag_id)
        if not dataset:
            raise HTTPException(404, f"{dag_id} is not bound to a dataset")
        tip = parse_instant(decision["tip"]) if decision and decision.get("tip") else datetime.now(UTC)
        threshold = parse_interval((decision or {}).get("lag_threshold") or conf.get("lag_threshold") or "1 hour")
        view, ms = query(lambda conn: progress.live_view(conn, dataset, tip=tip, threshold=threshold, decision=decision))
        return {**view, "db_ms": round(ms, 2)}

    return app
