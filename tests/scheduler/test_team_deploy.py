"""A team's deployment under a real scheduler: two YAML datasets, a broken file, the demo switched off.

What the README's "Deploying for a team" promises, end to end on a deployment of its own
(api-server, dag-processor, scheduler, triggerer; PostgreSQL metadata DB): each dataset has its own
DAGs; the broken file is one import error naming the file and the key while every other DAG parses;
unpausing one dataset's backfill DAG schedules that dataset only; `airflow backfill create` on it
loads exactly its intervals; nothing of the demo's `ledgers` appears anywhere.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import REPO, AirflowDeployment, PostgresCluster, scheduler_deployment
from psycopg import sql

from tests.dags import user_sources
from tidemark.connection import connect

DAY = timedelta(days=1)
FIRST, LAST = user_sources.EPOCH, user_sources.EPOCH + DAY  # backfill create's logical dates (data: 2 days)


def _yaml(name: str, schema: str) -> str:
    return textwrap.dedent(f"""\
        name: {name}
        description: Meter readings ({name})
        schedule: "@daily"
        tables:
          - name: readings
            schema: {schema}
            time_column: t
            chunk_interval: 6 hours
            columns:
              - {{name: t, type: timestamptz}}
              - {{name: meter, type: text}}
              - {{name: kwh, type: double precision, nullable: true}}
              - {{name: tags, type: "text[]", nullable: true}}
            source: {{kind: python, callable: "tests.dags.user_sources:meter_readings"}}
        """)


@pytest.fixture(scope="module")
def team(pg: PostgresCluster, dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AirflowDeployment, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("team-datasets")
    tag = uuid.uuid4().hex[:6]
    schemas = {"alpha": f"team_alpha_{tag}", "beta": f"team_beta_{tag}"}
    for name, schema in schemas.items():
        (folder / f"{name}.yaml").write_text(_yaml(name, schema))
    (folder / "broken.yaml").write_text("name: broken\ntables:\n  - name: x\n    time_column: t\n    colour: red\n")
    extra = {
        "TIDEMARK_DEMO": "off",
        "TIDEMARK_DATASETS_DIR": str(folder),
        "PYTHONPATH": f"{REPO / 'plugins'}:{REPO}",  # the python source's module, importable on every component
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
        "TIDEMARK_POKE_INTERVAL": "10",
        "TIDEMARK_RETRY_DELAY": "2",
    }
    with scheduler_deployment(pg, dsn, extra_env=extra) as dep:
        yield dep, schemas
    assert not dep.leftovers()


def _dag_ids(dep: AirflowDeployment) -> set[str]:
    return {d["dag_id"] for d in dep.api("GET", "/api/v2/dags?limit=100")["dags"]}


def _runs(dep: AirflowDeployment, dag_id: str) -> list[dict[str, Any]]:
    return dep.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]


def _table_exists(conn: Any, schema: str, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()[0] is not None


def _rows(conn: Any, schema: str, table: str) -> int | None:
    """Rows of a table, None where it does not exist."""
    if not _table_exists(conn, schema, table):
        return None
    return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()[0])


def test_two_datasets_a_broken_file_and_no_demo(team: tuple[AirflowDeployment, dict[str, str]], dsn: str) -> None:
    dep, schemas = team
    with connect(dsn) as conn:  # the session's engine is shared: other tests may have loaded the demo before
        t0 = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        ledgers_before = _rows(conn, "public", "ledgers")
    dep.wait_for("the api-server", lambda: dep.http("GET", "/api/v2/monitor/health", auth=False)[0] == 200, 180, 1)
    wanted = {"tidemark_backfill", "tidemark_catchup", "tidemark_backfill__alpha", "tidemark_catchup__alpha",
              "tidemark_backfill__beta", "tidemark_catchup__beta"}
    dep.wait_for("every dataset's DAGs", lambda: wanted <= _dag_ids(dep), 240, 2)
    dags = _dag_ids(dep)
    assert not any("ledgers" in d or d.endswith("__broken") for d in dags), sorted(dags)

    # One import error, of the declarations check, naming the broken file and its key.
    errors = dep.wait_for("the refused declaration's import error",
                          lambda: dep.api("GET", "/api/v2/importErrors")["import_errors"], 120, 2)
    assert [Path(e["filename"]).name for e in errors] == ["tidemark_declarations.py"], errors
    assert "broken.yaml" in errors[0]["stack_trace"] and "tables[0].colour" in errors[0]["stack_trace"]

    generic = dep.api("GET", "/api/v2/dags/tidemark_backfill/details")
    assert generic["timetable_summary"] in (None, "None"), generic["timetable_summary"]
    assert sorted(generic["params"]["dataset"]["schema"]["enum"]) == ["alpha", "beta"]

    # Unpausing alpha's backfill DAG schedules alpha only (its latest complete day: no data there, 0 rows).
    dep.api("PATCH", "/api/v2/dags/tidemark_backfill__alpha", {"is_paused": False})
    scheduled = dep.wait_for("alpha's scheduled run",
                             lambda: [r for r in _runs(dep, "tidemark_backfill__alpha") if r["run_type"] == "scheduled"],
                             120, 1)
    assert len(scheduled) == 1
    done = dep.wait_for("alpha's scheduled run to finish", lambda: dep.api(
        "GET", f"/api/v2/dags/tidemark_backfill__alpha/dagRuns/{scheduled[0]['dag_run_id']}")["state"]
        in ("success", "failed") and dep.api(
        "GET", f"/api/v2/dags/tidemark_backfill__alpha/dagRuns/{scheduled[0]['dag_run_id']}")["state"], 240, 1)
    assert done == "success", dep.task_logs_digest(scheduled[0]["dag_run_id"])

    # `airflow backfill create` on alpha loads exactly alpha's intervals.
    dep.cli("backfill", "create", "--dag-id", "tidemark_backfill__alpha",
            "--from-date", FIRST.date().isoformat(), "--to-date", LAST.date().isoformat(),
            "--dag-run-conf", '{"batch_interval": "6 hours"}')

    def backfilled() -> list[dict[str, Any]] | None:
        runs = [r for r in _runs(dep, "tidemark_backfill__alpha") if r["run_type"] == "backfill"]
        return runs if len(runs) == 2 and all(r["state"] in ("success", "failed") for r in runs) else None

    runs = dep.wait_for("alpha's two backfill runs", backfilled, 420, 2)
    assert all(r["state"] == "success" for r in runs), runs
    intervals = sorted((datetime.fromisoformat(r["data_interval_start"].replace("Z", "+00:00")),
                        datetime.fromisoformat(r["data_interval_end"].replace("Z", "+00:00"))) for r in runs)
    lo, hi = intervals[0][0], intervals[-1][1]
    assert all(a[1] == b[0] for a, b in zip(intervals, intervals[1:])), intervals
    want = sum(1 for _ in user_sources.minutes(max(lo, user_sources.EPOCH), min(hi, user_sources.TIP)))
    assert want > 0, (lo, hi)
    with connect(dsn) as conn:
        got = conn.execute(sql.SQL("SELECT count(*), min(t), max(t) FROM {}").format(
            sql.Identifier(schemas["alpha"], "readings"))).fetchone()
        assert got[0] == want and got[1] >= lo and got[2] < hi, (got, want, lo, hi)
        assert not _table_exists(conn, schemas["beta"], "readings"), "beta was loaded although nobody asked"
        assert _rows(conn, "public", "ledgers") == ledgers_before, "the demo's ledgers were loaded"
        assert conn.execute("SELECT count(*) FROM tidemark.runs WHERE dataset IN ('ledgers', 'beta') AND started_at >= %s",
                            (t0,)).fetchone()[0] == 0
    assert _runs(dep, "tidemark_backfill__beta") == [] and _runs(dep, "tidemark_backfill") == []
