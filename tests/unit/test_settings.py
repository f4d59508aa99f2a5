"""Settings: one typed, validated module; errors name the variable, the value and what is allowed."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tidemark import config as settings
from tidemark.config import InvalidSetting

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("tidemark_*.py"))


def test_defaults() -> None:
    s = settings.load({})
    assert s.max_parallel_batches == 4 and s.max_batches_ahead == 4
    assert s.poke_interval == 10.0 and s.wait_interval == 10.0
    assert s.retries == 2 and s.retry_delay == timedelta(seconds=5)
    assert s.live_schedule == "* * * * *"


def test_defaults_that_follow_another_setting() -> None:
    s = settings.load({"TIDEMARK_MAX_PARALLEL_BATCHES": "7", "TIDEMARK_POKE_INTERVAL": "2.5"})
    assert s.max_batches_ahead == 7 and s.wait_interval == 2.5
    s = settings.load({"TIDEMARK_MAX_PARALLEL_BATCHES": "7", "TIDEMARK_MAX_BATCHES_AHEAD": "0", "TIDEMARK_LIVE_SCHEDULE": "@hourly"})
    assert s.max_batches_ahead == 0 and s.live_schedule == "@hourly"


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("TIDEMARK_MAX_PARALLEL_BATCHES", "four", "an integer >= 1"),
        ("TIDEMARK_MAX_PARALLEL_BATCHES", "0", "an integer >= 1"),
        ("TIDEMARK_MAX_PARALLEL_BATCHES", "2.5", "an integer >= 1"),
        ("TIDEMARK_MAX_BATCHES_AHEAD", "-1", "an integer >= 0"),
        ("TIDEMARK_POKE_INTERVAL", "10s", "a number > 0"),
        ("TIDEMARK_POKE_INTERVAL", "0", "a number > 0"),
        ("TIDEMARK_POKE_INTERVAL", "nan", "a number > 0"),
        ("TIDEMARK_WAIT_INTERVAL", "inf", "a number > 0"),
        ("TIDEMARK_RETRIES", "many", "an integer >= 0"),
        ("TIDEMARK_RETRY_DELAY", "-5", "a number >= 0"),
        ("TIDEMARK_LIVE_SCHEDULE", "every minute", "cron expression"),
        ("TIDEMARK_LIVE_SCHEDULE", "61 * * * *", "cron expression"),
    ],
)
def test_a_bad_value_names_variable_value_and_what_is_allowed(name: str, value: str, allowed: str) -> None:
    with pytest.raises(InvalidSetting) as err:
        settings.load({name: value})
    message = str(err.value)
    assert name in message and repr(value) in message and allowed in message, message


def test_a_bad_value_is_the_dags_import_error(tmp_path: Path) -> None:
    """What an operator sees in Airflow: the import error names the variable, not `invalid literal for int()`."""
    code = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "import json; print(json.dumps(bag.import_errors))\n"
    )
    env = {**os.environ, "TIDEMARK_MAX_PARALLEL_BATCHES": "four", "PYTHONPATH": str(REPO / "plugins")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    errors = done.stdout.strip().splitlines()[-1]
    for dag_file in ("tidemark_backfill.py", "tidemark_catchup.py", "tidemark_live.py"):
        assert dag_file in errors, errors
    assert "TIDEMARK_MAX_PARALLEL_BATCHES='four' is not valid: expected an integer >= 1" in errors, errors
    assert "invalid literal" not in errors


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_read_no_environment_of_their_own(dag_file: Path) -> None:
    tree = ast.parse(dag_file.read_text())
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"environ", "getenv", "setting"}, dag_file.name
    # Settings are read, validated and applied by the factory the file calls, nowhere in the file itself.
    assert "factory." in dag_file.read_text()
    assert "config.load()" in (REPO / "plugins" / "tidemark" / "airflow" / "factory.py").read_text()


def test_the_readme_table_lists_every_setting_with_its_default() -> None:
    readme = (REPO / "README.md").read_text()
    rows = {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\| `(TIDEMARK_[A-Z_]+)` \| ([^|]+) \| [^|]+ \| [^|]+ \|$", readme, re.M)}
    for spec in settings.SPECS:
        assert spec.name in rows, f"{spec.name} is missing from the README settings table"
        shown = rows[spec.name]
        expected = f"`{spec.default}`" if spec.default is not None else f"= `{spec.default_from}`"
        assert shown == expected, (spec.name, shown, expected)
    assert set(rows) == {s.name for s in settings.SPECS}, "the table lists a setting settings.py does not read"
