"""What Airflow shows for a folder of broken and clashing declarations: one import error, every other DAG intact.

The DAG files are parsed by Airflow's own DagBag, as the DAG processor does,
from a datasets folder holding a good dataset, hostile files (a FIFO, an alias
bomb, a 60 MB file, bytes that are not UTF-8, a repeated key) and a second
declaration of a hypertable another dataset owns. Only
``tidemark_declarations.py`` fails, listing each refused file; the good
datasets keep their DAGs, the refused ones have none, and the parse stays fast.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"

SOURCE = "source: {kind: sql, conn_id: warehouse, query: 'SELECT * FROM x WHERE t >= %(start)s AND t < %(end)s'}"


def dataset(name: str, table: str) -> str:
    return f"name: {name}\n{SOURCE}\ntables:\n  - name: {table}\n    time_column: t\n"


@pytest.fixture
def datasets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "datasets"
    folder.mkdir()
    monkeypatch.setenv("TIDEMARK_DATASETS_DIR", str(folder))
    yield folder


def test_every_refused_file_is_one_import_error_and_the_rest_keep_their_dags(datasets_dir: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (datasets_dir / "a_meters.yaml").write_text(dataset("meters", "meters"))
    (datasets_dir / "b_weather.yaml").write_text(dataset("weather", "observations"))
    (datasets_dir / "c_meters_again.yaml").write_text(dataset("meters_again", "meters"))  # public.meters is taken
    (datasets_dir / "bomb.yaml").write_text("name: bomb\ntables: [&a [x, x], &b [*a, *a], &c [*b, *b]]\n")
    (datasets_dir / "dup.yaml").write_text(dataset("dup", "dup") + "name: dup2\n")
    (datasets_dir / "latin1.yaml").write_bytes(dataset("latin1", "latin1").encode() + b"# caf\xe9\n")
    with (datasets_dir / "huge.yaml").open("wb") as f:
        f.truncate(60 * 2**20)
    os.mkfifo(datasets_dir / "pipe.yaml")

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(DAGS))
    elapsed = time.perf_counter() - started

    assert [Path(f).name for f in bag.import_errors] == ["tidemark_declarations.py"], bag.import_errors
    error = next(iter(bag.import_errors.values()))
    assert "6 Tidemark dataset declaration(s) refused" in error, error
    for file, says in (("c_meters_again.yaml", "key tables[0].name: table 'public.meters' is already declared by "
                                               f"dataset 'meters' (dataset file {datasets_dir / 'a_meters.yaml'})"),
                       ("bomb.yaml", "key tables[0]: anchor &a"), ("dup.yaml", "key name: is given twice"),
                       ("latin1.yaml", "is not UTF-8"), ("huge.yaml", "over the 1,048,576-byte limit"),
                       ("pipe.yaml", "is a named pipe (FIFO)")):
        assert f"- dataset file {datasets_dir / file}: " in error and says in error, (file, error)
    for name in ("meters", "weather"):
        assert {f"tidemark_backfill__{name}", f"tidemark_catchup__{name}"} <= set(bag.dags), sorted(bag.dags)
        assert name in bag.dags["tidemark_backfill"].params.get_param("dataset").schema["enum"]
    assert not any(d.endswith(("__meters_again", "__bomb", "__dup", "__latin1")) for d in bag.dags), sorted(bag.dags)
    assert elapsed < 60, elapsed  # the four DAG files, each reading the folder: no file may stall a parse
