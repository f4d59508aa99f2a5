"""The Tidemark plugin's endpoints, served by Airflow's own API app with real authentication.

The app is Airflow's ``create_app()`` (the plugin is discovered from the
plugins folder exactly as the API server does), the auth manager is the
default SimpleAuthManager with a known password, a token is obtained from
``POST /auth/token`` as the UI's login does, and every number comes from the
real embedded engine after the same library calls the DAG tasks make.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.conftest import load_through_library
from tidemark.flows import backfill, catchup, live
from tidemark.state import cursors, runs
from tidemark.connection import factory
from tidemark.model.dataset import Dataset

START = datetime(2024, 6, 1, tzinfo=UTC)
PASSWORD = "tidemark-ui-test"


@pytest.fixture(scope="module")
def client(airflow_db: Path, dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    passwords.write_text(json.dumps({"admin": PASSWORD}))
    saved = {k: os.environ.get(k) for k in ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
                                             "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
                                             "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS",
                                             "AIRFLOW_CONN_TIDEMARK_TIMESCALE")}
    os.environ.update({
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW_CONN_TIDEMARK_TIMESCALE": dsn.split("?")[0],
    })
    from airflow.api_fastapi.app import create_app, purge_cached_app

    purge_cached_app()
    try:
        with TestClient(create_app()) as c:
            yield c
    finally:
        purge_cached_app()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def token(client: Any) -> str:
    r = client.post("/auth/token", json={"username": "admin", "password": PASSWORD})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["access_token"])


def add_dag_run(
    dag_id: str, run_id: str, state: str, tasks: dict[int, tuple[str, str]] | None = None, *,
    task_id: str = "insert_batch", xcoms: dict[tuple[str, str], Any] | None = None, conf: dict[str, Any] | None = None,
) -> None:
    """The Airflow side of a run: its DagRun row, mapped batch task instances and XComs (as tasks leave them)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert, select
    from uuid6 import uuid7

    now = datetime.now(UTC)
    with create_session() as session:
        session.execute(insert(DagRun.__table__).values(
            dag_id=dag_id, run_id=run_id, run_type="manual", state=state, run_after=now, logical_date=None,
            start_date=now, conf=conf or {}, clear_number=0, span_status="not_started",
        ))
        dag_run_pk = session.execute(
            select(DagRun.id).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).scalar_one()
        for (xcom_task, key), value in (xcoms or {}).items():
            session.execute(insert(TaskInstance.__table__).values(
                id=uuid7(), dag_id=dag_id, run_id=run_id, task_id=xcom_task, map_index=-1, state="success",
                try_number=1, max_tries=0, pool="default_pool", pool_slots=1, queue="default", priority_weight=1,
                custom_operator_name="", span_status="not_started", hostname="", unixname="",
                executor_config=b"\x80\x04}\x94.",
            ))
            # As the Task Execution API stores it: the JSON value itself.
            session.execute(insert(XComModel.__table__).values(
                dag_run_id=dag_run_pk, task_id=xcom_task, map_index=-1, key=key, dag_id=dag_id, run_id=run_id,
                value=value, timestamp=now,
            ))
        for index, (ti_state, label) in (tasks or {}).items():
            session.execute(insert(TaskInstance.__table__).values(
                id=uuid7(), dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=index, state=ti_state,
                rendered_map_index=label, try_number=1, max_tries=2, pool="default_pool", pool_slots=1, queue="default",
                priority_weight=1, custom_operator_name="", span_status="not_started", hostname="", unixname="",
                executor_config=b"\x80\x04}\x94.",
            ))


def request(ds: Dataset, hours: int = 12) -> backfill.BackfillRequest:
    return backfill.BackfillRequest.from_params(
        {"dataset": ds.name, "start": START.isoformat(), "end": (START + timedelta(hours=hours)).isoformat(),
         "batch_interval": "3 hours"}
    )


def load(dsn: str, ds: Dataset, key: str, *, only: int | None = None, fail: set[int] = frozenset()) -> tuple[dict, list, dict, dict]:
    return load_through_library(dsn, request(ds), key, only=only, fail=fail)


def get(client: Any, token: str, dag_run: str, dag_id: str = "tidemark_backfill") -> Any:
    return client.get(f"/tidemark/api/dags/{dag_id}/runs/{dag_run}", headers={"Authorization": f"Bearer {token}"})


def runs_row(conn: psycopg.Connection, key: str) -> tuple[Any, ...]:
    return conn.execute(
        "SELECT state, planned_batches, watermark_batches, report FROM tidemark.runs WHERE run_id = %s", (key,)
    ).fetchone()


def test_finished_run(client: Any, token: str, dsn: str, conn: psycopg.Connection, registered_dataset: Dataset) -> None:
    rid = f"manual__{uuid.uuid4().hex[:8]}"
    key = f"tidemark_backfill/{rid}"
    summary, batches, states, results = load(dsn, registered_dataset, key)
    backfill.finalize(factory(dsn), summary, states, results)
    add_dag_run("tidemark_backfill", rid, "success")
    r = get(client, token, rid)
    assert r.status_code == 200, r.text
    view = r.json()
    state, planned, wm, report = runs_row(conn, key)
    assert (view["state"], view["planned_batches"], view["watermark"]["batches"]) == (state, planned, wm) == ("succeeded", 4, 4)
    assert view["loaded_batches"] == 4 and view["loaded_beyond_watermark"] == 0 and view["failed_batches"] == []
    assert view["rows_loaded"] == report["rows_loaded_total"] > 0
    assert view["report"] == report and view["refresh"] is False and view["eta_seconds"] is None
    # One observation per batch commit and one per poke (load_through_library pokes after each batch).
    assert [h["source"] for h in view["history"]].count("poke") == 4
    assert [h["source"] for h in view["history"]].count("batch") == 4
    assert view["history"][-1]["watermark_batches"] == 4 and view["history"][-1]["rows_loaded"] == view["rows_loaded"]
    stored = [h["stored_bytes"] for h in view["history"]]
    assert all(b is not None and b > 0 for b in stored) and stored == sorted(stored)  # the load grows the storage
    assert view["db_ms"] < 100, view["db_ms"]
    # Every mode tells what was written and how compact it is (the fixture's dataset is written compressed).
    size = report["bytes"]
    # Its batches share chunks, which direct mode cannot promise sorted: they are recompressed in the run, and the
    # uncompressed size comes from TimescaleDB's statistics where it has them, measured where it has none.
    chunks = report["chunks"]
    assert report["write_mode"].startswith("direct") and chunks["written_compressed"] + chunks["compressed_afterwards"] \
        == chunks["compressed"] > 0
    assert size["stored"] == view["stored_bytes"] == stored[-1] > 0
    assert size["uncompressed"] > size["stored"]
    assert size["uncompressed"] == (size["uncompressed_from_timescaledb"] or 0) + (size["uncompressed_measured"] or 0)
    assert size["storage_ratio"] == round(size["uncompressed"] / size["stored"], 2) > 1.5
    # The nav list shows it, with its ratio, its size and a link target.
    listed = client.get("/tidemark/api/runs", headers={"Authorization": f"Bearer {token}"}).json()["runs"]
    mine = next(x for x in listed if x["run_id"] == key)
    assert mine["ratio"] == size["storage_ratio"] and mine["stored_bytes"] == size["stored"]
    assert mine["loaded_batches"] == 4 and mine["dag_run_id"] == rid
    # The UI's iframe authenticates with the login cookie, not a header.
    page = client.get(f"/tidemark/run?dag_id=tidemark_backfill&run_id={rid}", cookies={"_token": token})
    assert page.status_code == 200 and "Tidemark.runPage()" in page.text


def test_running_run(client: Any, token: str, dsn: str, conn: psycopg.Connection, registered_dataset: Dataset) -> None:
    rid = f"manual__{uuid.uuid4().hex[:8]}"
    key = f"tidemark_backfill/{rid}"
    load(dsn, registered_dataset, key, only=2)
    add_dag_run("tidemark_backfill", rid, "running")
    view = get(client, token, rid).json()
    assert view["state"] == "running" and view["refresh"] is True
    assert (view["loaded_batches"], view["planned_batches"], view["watermark"]["batches"]) == (2, 4, 2)
    assert view["rows_per_second"] > 0 and view["eta_seconds"] > 0
    assert [h["watermark_batches"] for h in view["history"] if h["source"] == "poke"] == [1, 2]
    assert [h["watermark_batches"] for h in view["history"] if h["source"] == "batch"] == [1, 2]


def test_failed_run_names_the_batch_and_how_to_resume(
    client: Any, token: str, dsn: str, conn: psycopg.Connection, registered_dataset: Dataset
) -> None:
    rid = f"manual__{uuid.uuid4().hex[:8]}"
    key = f"tidemark_backfill/{rid}"
    summary, batches, states, results = load(dsn, registered_dataset, key, fail={1})
    with pytest.raises(backfill.RunFailed):
        backfill.finalize(factory(dsn), summary, states, results)
    add_dag_run("tidemark_backfill", rid, "failed", {
        i: (s, f"window {i}") for i, s in states.items()
    }, conf={"dataset": registered_dataset.name, "batch_interval": "3 hours"})
    # As the DAG's insert_batch records it: the error's first line, masked, never the lines after it.
    runs.note_failure(factory(dsn), key, 1, 3, RuntimeError(
        "COPY failed at postgresql://u:pw@db:5432/x password=hunter2\nDETAIL: Failing row contains (secret-row)"))
    view = get(client, token, rid).json()
    assert view["state"] == runs_row(conn, key)[0] == "failed" and view["refresh"] is False
    error = "RuntimeError: COPY failed at <uri> password=***"
    assert view["failed_batches"] == [{"index": 1, "state": "failed", "window": "window 1", "error": error, "try_number": 3}]
    assert [c["status"] for c in view["strip"]] == ["loaded", "failed", "loaded", "loaded"]
    assert view["strip"][1]["error"] == error and view["strip"][1]["error_try"] == 3
    assert view["batch_task_id"] == "insert_batch" and view["dag_run_id"] == rid
    assert view["watermark"]["batches"] == 1 and view["loaded_batches"] == 3 and view["loaded_beyond_watermark"] == 2
    assert sum(view["rows_by_table"].values()) == view["rows_loaded"] > 0
    # The resume instruction carries this run's own values.
    assert "clear the failed task instances" in view["resume"] and f'"dag_run_id": "{rid}"' in view["resume"]
    assert "(batches 1)" in view["resume"] and f'"dataset": "{registered_dataset.name}"' in view["resume"]
    assert "hunter2" not in json.dumps(view) and "secret-row" not in json.dumps(view)


def test_catchup_run_shows_staging_then_the_publish(
    client: Any, token: str, dsn: str, conn: psycopg.Connection, registered_dataset: Dataset
) -> None:
    rid = f"manual__{uuid.uuid4().hex[:8]}"
    key = f"tidemark_catchup/{rid}"
    connect = factory(dsn)
    planned = catchup.plan_catchup(connect, request(registered_dataset, hours=6), key)
    summary, batches = planned["plan"], planned["batches"]
    catchup.stage_batch(connect, summary, batches[0])
    add_dag_run("tidemark_catchup", rid, "running", xcoms={("plan", "plan"): summary})  # names.PLAN, names.PLAN_KEY
    view = get(client, token, rid, "tidemark_catchup").json()
    assert view["kind"] == "catchup" and view["refresh"] is True
    assert view["catchup"]["staged_batches"] == view["loaded_batches"] == 1 and view["planned_batches"] == 2
    assert view["catchup"]["outcome"] == "pending"
    catchup.stage_batch(connect, summary, batches[1])
    catchup.publish(connect, summary, {0: "success", 1: "success"})
    view = get(client, token, rid, "tidemark_catchup").json()
    assert view["state"] == "succeeded" and view["catchup"]["outcome"] == "published"
    assert view["catchup"]["cursor_after_publish"] == (START + timedelta(hours=6)).isoformat()
    assert sum(view["catchup"]["published_rows"].values()) > 0


def test_live_run_shows_cursor_tip_and_lag(client: Any, token: str, dsn: str, conn: psycopg.Connection,
                                           registered_dataset: Dataset) -> None:
    rid = f"scheduled__{uuid.uuid4().hex[:8]}"
    cursors.initialise(conn, registered_dataset.name, START, by="test")
    decision = live.Decision("catchup", registered_dataset.name, START, START + timedelta(hours=3), "lag 3 hours")
    add_dag_run("tidemark_live", rid, "success", xcoms={("decide", "decision"): decision.to_dict()},
                conf={"lag_threshold": "1 hour"})
    view = get(client, token, rid, "tidemark_live").json()
    assert view["kind"] == "live" and view["cursor"] == START.isoformat() and view["refresh"] is False
    assert view["lag_seconds"] == 3 * 3600 and view["threshold_seconds"] == 3600 and view["over_threshold"] is True
    assert view["decision"]["action"] == "catchup"


def test_unknown_run_is_404(client: Any, token: str) -> None:
    assert get(client, token, "manual__does_not_exist").status_code == 404
    rid = f"manual__{uuid.uuid4().hex[:8]}"
    add_dag_run("tidemark_backfill", rid, "success")  # an Airflow run Tidemark never recorded
    assert get(client, token, rid).status_code == 404


def test_anonymous_and_forged_requests_are_refused(client: Any, dsn: str) -> None:
    for path in ("/tidemark/api/runs", "/tidemark/api/dags/tidemark_backfill/runs/x", "/tidemark/run", "/tidemark/runs",
                 "/tidemark/static/tidemark.js"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code in (401, 403), path
        assert client.get(path, cookies={"_token": "forged"}).status_code in (401, 403), path


def test_every_tidemark_response_is_no_store_and_nosniff(client: Any, token: str) -> None:
    """JSON, pages, scripts and refusals alike: run data is not for shared caches, nor a content type to guess."""
    auth = {"Authorization": f"Bearer {token}"}
    for path, headers, status in [
        ("/tidemark/api/runs", auth, 200), ("/tidemark/api/declarations", auth, 200), ("/tidemark/runs", auth, 200),
        ("/tidemark/static/tidemark.js", auth, 200), ("/tidemark/api/dags/tidemark_backfill/runs/none", auth, 404),
        ("/tidemark/api/runs", {}, 401),
    ]:
        r = client.get(path, headers=headers)
        assert r.status_code == status, (path, r.status_code)
        assert r.headers.get("cache-control") == "no-store", (path, r.headers)
        assert r.headers.get("x-content-type-options") == "nosniff", (path, r.headers)


def test_responses_carry_no_connection_details(client: Any, token: str, dsn: str) -> None:
    body = client.get("/tidemark/api/runs", headers={"Authorization": f"Bearer {token}"}).text
    for secret in ("postgres:postgres", "postgresql://", "SELECT", str(dsn.split(":")[-1].split("/")[0])):
        assert secret not in body


def test_plugin_registers_once(client: Any, token: str) -> None:
    plugins = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}).json()["plugins"]
    ours = [p for p in plugins if p["name"] == "tidemark"]
    assert len(ours) == 1
    views = {v["url_route"]: v for v in ours[0]["external_views"]}
    assert views["tidemark"]["destination"] == "dag_run" and "{RUN_ID}" in views["tidemark"]["href"]
    assert views["tidemark-runs"]["destination"] == "nav"
    errors = client.get("/api/v2/importErrors", headers={"Authorization": f"Bearer {token}"})
    assert "already registered" not in errors.text


def test_an_unreachable_database_is_a_503_that_names_only_the_connection_id(client: Any, token: str) -> None:
    from fastapi.testclient import TestClient

    from tests.conftest import free_port
    from tidemark.connection import connect
    from tidemark.airflow.ui.app import create_app

    port = free_port()  # nothing listens there
    secret_dsn = f"postgresql://tidemark:s3cret-pw@127.0.0.1:{port}/warehouse?sslmode=disable"
    with TestClient(create_app(lambda: connect(secret_dsn, connect_timeout=2))) as app:
        r = app.get("/api/runs", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503 and "tidemark_timescale" in r.text
    for leak in ("s3cret-pw", str(port), "127.0.0.1", "warehouse", "tidemark:"):
        assert leak not in r.text, leak


def test_refused_declarations_are_served_for_the_runs_page(
    client: Any, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidemark.declare import catalog

    monkeypatch.setattr(catalog, "_search_dirs", [])  # the app adds the DAG folder's datasets/; undone after
    folder = tmp_path / "datasets"
    folder.mkdir()
    monkeypatch.setenv("TIDEMARK_DATASETS_DIR", str(folder))
    (folder / "fine.yaml").write_text("name: fine\nsource: {kind: sql, conn_id: w}\ntables: [{name: fine, time_column: t}]\n")
    hostile = "<img src=x onerror=alert(1)>" + "x" * 5000
    (folder / "hostile.yaml").write_text(f"name: hostile\nsource: {{kind: sql, conn_id: w}}\n"
                                         f"tables: [{{name: '{hostile}', time_column: t}}]\n")
    auth = {"Authorization": f"Bearer {token}"}
    r = client.get("/tidemark/api/declarations", headers=auth)
    assert r.status_code == 200, r.text
    refused = r.json()["refused"]
    assert len(refused) == 1 and refused[0].startswith(f"dataset file {folder / 'hostile.yaml'}: key tables[0].name: ")
    assert "x" * 61 not in refused[0] and len(refused[0]) < 600  # the value is echoed as a short prefix only
    assert client.get("/tidemark/api/declarations").status_code == 401
    page = client.get("/tidemark/runs", cookies={"_token": token}).text
    assert page.index("Refused dataset declarations") < page.index('<table id="runs">') and 'id="refused-list"' in page
    script = client.get("/tidemark/static/tidemark.js", headers=auth).text
    assert "api/declarations" in script and "innerHTML" not in script  # messages become text nodes, never markup


def test_the_api_server_reads_the_dag_folders_datasets_and_the_demo_as_the_dag_files_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidemark.airflow.ui.app import refused_declarations
    from tidemark.declare import catalog

    monkeypatch.setattr(catalog, "_search_dirs", [])
    monkeypatch.delenv("TIDEMARK_DATASETS_DIR", raising=False)
    monkeypatch.delenv("AIRFLOW__CORE__DAGS_FOLDER")  # as where airflow.cfg alone names the DAG folder
    dags = tmp_path / "dags"
    (dags / "datasets").mkdir(parents=True)
    # public.ledgers is the demo's table: refused where TIDEMARK_DEMO=on, as the DAG processor refuses it.
    (dags / "datasets" / "mine.yaml").write_text(
        "name: mine\nsource: {kind: sql, conn_id: w}\ntables: [{name: ledgers, time_column: close_time}]\n")
    monkeypatch.setenv("TIDEMARK_DEMO", "on")
    assert [m.split(": key ")[1] for m in refused_declarations(dags)] == [
        "tables[0].name: table 'public.ledgers' is already declared by dataset 'ledgers' (built in); a hypertable has "
        "one owner, so rename one of them (or its schema)"]
    monkeypatch.setenv("TIDEMARK_MAX_PARALLEL_BATCHES", "four")
    assert "TIDEMARK_MAX_PARALLEL_BATCHES='four' is not valid" in refused_declarations(dags)[0]


def test_a_rerun_under_the_same_run_id_keeps_the_first_attempt_and_the_runs_page_filters(
    client: Any, token: str, dsn: str, conn: psycopg.Connection, registered_dataset: Dataset
) -> None:
    rid = f"backfill__{uuid.uuid4().hex[:8]}"
    key = f"tidemark_backfill/{rid}"
    summary, batches, states, results = load(dsn, registered_dataset, key)
    first = backfill.finalize(factory(dsn), summary, states, results)
    add_dag_run("tidemark_backfill", rid, "success")
    # `airflow backfill create --reprocess-behavior completed`: the same run id is planned and finalized again.
    summary, batches, states, results = load(dsn, registered_dataset, key)
    again = backfill.finalize(factory(dsn), summary, states, results)
    assert first is not None and again is not None and again["batches"]["loaded"] == 0
    assert conn.execute("SELECT attempt FROM tidemark.runs WHERE run_id = %s", (key,)).fetchone()[0] == 2
    kept = conn.execute("SELECT attempt, state, report FROM tidemark.runs_history WHERE run_id = %s", (key,)).fetchall()
    assert [(a, s) for a, s, _ in kept] == [(1, "succeeded")] and kept[0][2] == json.loads(json.dumps(first))
    view = get(client, token, rid).json()
    assert view["attempt"] == 2 and view["report"]["batches"]["loaded"] == 0
    assert [a["attempt"] for a in view["earlier_attempts"]] == [1]
    assert view["earlier_attempts"][0]["rows_loaded"] == first["rows_loaded_total"] > 0
    auth = {"Authorization": f"Bearer {token}"}
    listed = client.get(f"/tidemark/api/runs?dataset={registered_dataset.name}", headers=auth).json()
    assert [(r["run_id"], r["attempt"], r["latest_attempt"]) for r in listed["runs"]] == [(key, 2, True), (key, 1, False)]
    assert registered_dataset.name in listed["datasets"]
    assert client.get(f"/tidemark/api/runs?dataset={registered_dataset.name}&state=failed", headers=auth).json()["runs"] == []
    # Planning again while the attempt runs (a retried plan task) stays that attempt.
    runs.claim(conn, key, registered_dataset.name, "backfill", START, START + timedelta(hours=12), 4)
    runs.claim(conn, key, registered_dataset.name, "backfill", START, START + timedelta(hours=12), 4)
    assert conn.execute("SELECT attempt FROM tidemark.runs WHERE run_id = %s", (key,)).fetchone()[0] == 3


def test_failure_text_is_one_line_without_secrets() -> None:
    assert runs.failure_text(psycopg.OperationalError("connection to server at 10.0.0.5, port 5432 failed")) == (
        "OperationalError: the database connection failed (the task log has the details)")
    long = runs.failure_text(ValueError("x" * 1000 + "\nsecond"))
    assert len(long) == runs.FAILURE_TEXT_MAX and "second" not in long
    assert runs.failure_text(KeyError("token=abc123 api_key: zzz")) == "KeyError: 'token=*** api_key=***"
