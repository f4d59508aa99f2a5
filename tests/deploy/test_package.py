"""Tidemark installs with one pip install, and its DAG files reach any dags folder from the installed package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def source_copy(dest: Path) -> Path:
    """What the build reads, copied: setuptools writes build/ and *.egg-info next to the sources it builds,
    which in the repository would register a stray ``tidemark`` distribution (entry points and all)."""
    dest.mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    shutil.copy(REPO / "README.md", dest / "README.md")
    shutil.copytree(REPO / "plugins" / "tidemark", dest / "plugins" / "tidemark",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "dags", dest / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_wheel_carries_the_package_the_dag_files_and_the_installer(tmp_path: Path) -> None:
    src = source_copy(tmp_path / "src")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    wheel = next(tmp_path.glob("tidemark-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for wanted in ("tidemark/__init__.py", "tidemark/sources/base.py", "tidemark/sources/sql.py",
                   "tidemark/sources/files.py", "tidemark/sources/python.py", "tidemark/declare/yaml_files.py",
                   "tidemark/dag_files/tidemark_backfill.py", "tidemark/dag_files/tidemark_catchup.py",
                   "tidemark/dag_files/tidemark_live.py", "tidemark/airflow/ui/plugin.py", "tidemark/airflow/ui/static/run.html",
                   "tidemark/model/run_plan.py", "tidemark/flows/plan.py", "tidemark/load/loader.py", "tidemark/timescale/compressor.py",
                   "tidemark/state/ledger.py", "tidemark/demo/__init__.py"):
        assert wanted in names, wanted
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Provides-Extra: parquet" in text and "Requires-Dist: apache-airflow" in text
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "tidemark.airflow.ui.plugin:TidemarkUIPlugin" in zipfile.ZipFile(wheel).read(entry).decode()

    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    dags = tmp_path / "airflow" / "dags"
    done = subprocess.run([sys.executable, "-m", "tidemark.airflow.dag_install", "install", str(dags)], cwd=tmp_path,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in dags.glob("*.py")) == ["tidemark_backfill.py", "tidemark_catchup.py",
                                                         "tidemark_live.py"]
    assert (dags / "tidemark_backfill.py").read_text() == (REPO / "dags" / "tidemark_backfill.py").read_text()
    assert (dags / "datasets").is_dir()
    again = subprocess.run([sys.executable, "-m", "tidemark.airflow.dag_install", "install", str(dags)], cwd=tmp_path,
                           env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 1 and "--force" in again.stderr
