"""``tidemark validate``: the installed command says what the DAG processor would, before anything is deployed.

It runs as a user runs it, from ``.venv/bin`` (written by ``make setup``), in
a process of its own; its refusals are compared with the catalogue's own in
this process, so the two cannot drift apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tidemark.declare import catalog

REPO = Path(__file__).resolve().parents[2]
COMMAND = REPO / ".venv" / "bin" / "tidemark"

FLIGHTS = """\
name: flights
schedule: "@hourly"
live: {schedule: "*/5 * * * *", unit: 5 minutes, lag_threshold: 2 hours}
tables:
  - name: flights
    time_column: t
    columns: [{name: t, type: timestamptz}, {name: origin, type: text}]
    source: {kind: sql, conn_id: flights_db, query: "SELECT * FROM f WHERE t >= %(start)s AND t < %(end)s"}
"""
WEATHER = """\
name: weather
tables:
  - {name: observations, schema: weather, time_column: t, source: {kind: files, url: "data/{start:%Y}/*.parquet"}}
  - {name: stations, schema: weather, time_column: t, source: {kind: sql, conn_id: w}}
"""


def run(*args: str, demo: str = "off", **env: str) -> subprocess.CompletedProcess[str]:
    assert COMMAND.exists(), f"{COMMAND} is missing: `make setup` writes it"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDEMARK_DATASET")}
    return subprocess.run([str(COMMAND), *args], env={**clean, "TIDEMARK_DEMO": demo, **env}, capture_output=True,
                          text=True, timeout=120, cwd=REPO)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    folder = tmp_path / "good"
    folder.mkdir()
    (folder / "flights.yaml").write_text(FLIGHTS)
    (folder / "weather.yml").write_text(WEATHER)
    return folder


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "flights.yaml").write_text(FLIGHTS)
    (folder / "twin.yaml").write_text(FLIGHTS.replace("name: flights\n", "name: twin\n", 1))
    (folder / "types.yaml").write_text(FLIGHTS.replace("name: flights\n", "name: types\n", 1).replace(
        "    time_column: t\n", "    time_column: t\n    segmentby: 5\n"))
    (folder / "dup.yaml").write_text(WEATHER + "name: again\n")
    (folder / "bomb.yaml").write_text("name: bomb\ntables: &a [*a]\n")
    os.mkfifo(folder / "pipe.yaml")
    return folder


def test_a_good_folder_exits_0_with_a_line_per_dataset(good: Path) -> None:
    done = run("validate", str(good))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.splitlines() == [
        "flights: 1 table (public.flights); source sql; schedule @hourly; live */5 * * * *, unit 5 minutes, "
        "catchup at 2 hours of lag",
        "weather: 2 tables (weather.observations, weather.stations); source files, sql",
    ]
    one = run("validate", str(good / "weather.yml"))  # a file alone
    assert one.returncode == 0 and one.stdout.startswith("weather: 2 tables"), one.stderr
    demo = run("validate", str(good / "flights.yaml"), demo="on")  # the demo's dataset takes part where it is on
    assert demo.returncode == 0 and [line.split(":")[0] for line in demo.stdout.splitlines()] == ["flights", "ledgers"]


def test_a_bad_folder_exits_1_with_the_dag_processors_messages(bad: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = run("validate", str(bad), demo="on")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "flights: 1 table (public.flights); source sql; schedule @hourly; live */5 * * * *, unit 5 minutes, "
        "catchup at 2 hours of lag", "ledgers: 3 tables (public.ledgers, public.transactions, public.operations); "
        "source synthetic; schedule @daily; live * * * * * (TIDEMARK_LIVE_SCHEDULE), unit 5 minutes, catchup at 1 hour of lag"]
    *messages, last = done.stderr.splitlines()
    assert last == "tidemark validate: 5 declaration(s) refused"
    monkeypatch.setenv("TIDEMARK_DATASETS_DIR", str(bad))
    assert messages == [r.message for r in catalog.errors()]  # what the DAG processor reports, word for word
    for file, key in (("bomb.yaml", "key tables: anchor &a"), ("dup.yaml", "key name: is given twice"),
                      ("pipe.yaml", "is a named pipe (FIFO)"), ("twin.yaml", "key tables[0].name: table 'public.flights'"),
                      ("types.yaml", "key tables[0].segmentby: must be")):
        assert any(m.startswith(f"dataset file {bad / file}: ") and key in m for m in messages), (file, messages)


def test_python_dash_m_tidemark_is_the_same_command(bad: Path) -> None:
    env = {**os.environ, "TIDEMARK_DEMO": "on", "PYTHONPATH": str(REPO / "plugins")}
    env.pop("TIDEMARK_DATASETS_DIR", None)
    done = subprocess.run([sys.executable, "-m", "tidemark", "validate", str(bad)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stderr) == (1, run("validate", str(bad), demo="on").stderr)


def test_no_path_means_the_configured_folders(good: Path, bad: Path) -> None:
    assert run("validate", TIDEMARK_DATASETS_DIR=str(good)).returncode == 0
    assert run("validate", TIDEMARK_DATASETS_DIR=f"{good}{os.pathsep}{bad}").returncode == 1


@pytest.mark.parametrize(("args", "env", "says"), [
    ((), {}, "the following arguments are required: COMMAND"),
    (("check",), {}, "invalid choice: 'check'"),
    (("validate", "/no/such/folder"), {}, "/no/such/folder: no such file or folder"),
    (("validate", "README.md"), {}, "README.md: not a .yaml or .yml file"),
    (("validate", "."), {"TIDEMARK_MAX_PARALLEL_BATCHES": "four"}, "TIDEMARK_MAX_PARALLEL_BATCHES='four' is not valid"),
    (("validate",), {"AIRFLOW__CORE__DAGS_FOLDER": ""}, "no datasets folder: give PATH"),
])
def test_usage_errors_exit_2(args: tuple[str, ...], env: dict[str, str], says: str) -> None:
    done = run(*args, **env)
    assert done.returncode == 2 and says in done.stderr, (done.returncode, done.stderr)


def max_rss_mib(*args: str) -> tuple[int, float, float]:
    """Exit status, peak resident memory (MiB) and seconds of one run of the command, measured by the kernel."""
    started = time.perf_counter()
    process = subprocess.Popen([str(COMMAND), *args], env={**os.environ, "TIDEMARK_DEMO": "off"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024, time.perf_counter() - started


def test_hostile_files_cost_the_process_no_memory_or_time_worth_the_name(good: Path, tmp_path: Path) -> None:
    """What tracemalloc cannot see (libyaml's own allocations) the kernel's count of the process does."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "flights.yaml").write_text(FLIGHTS)
    (zoo / "nested.yaml").write_text("name: n\ntables: " + "[" * 50_000 + "]" * 50_000 + "\n")
    (zoo / "many.yaml").write_text("name: m\ntables: [" + "1," * 60_000 + "]\n")
    (zoo / "bomb.yaml").write_text("name: b\ntables: [&a [x, x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]]\n")
    (zoo / "long.yaml").write_text("name: " + "N" * 1_000_000 + "\ntables: []\n")
    with (zoo / "huge.yaml").open("wb") as f:
        f.truncate(60 * 2**20)
    os.mkfifo(zoo / "pipe.yaml")
    (zoo / "zero.yaml").symlink_to("/dev/zero")
    code, baseline, _ = max_rss_mib("validate", str(good))
    assert code == 0
    code, peak, seconds = max_rss_mib("validate", str(zoo))
    print(f"tidemark validate: good folder {baseline:.1f} MiB; 8 hostile files {peak:.1f} MiB, {seconds:.2f} s")
    assert code == 1
    # Reading the 60 MB file, or expanding the bomb, would show here; parsing 1 MB of YAML costs a few MiB.
    assert peak - baseline < 20, (baseline, peak)
    assert seconds < 10, seconds  # the interpreter's start included
