"""The plugin loads from the plugins folder and from an installed package's entry point, never twice.

Each case runs Airflow's own plugin discovery in a fresh interpreter; the "installed" case puts a
distribution declaring the ``airflow.plugins`` entry point on the path, as ``pip install`` would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
print(json.dumps({"plugins": [[p.name, str(p.source)] for p in plugins], "errors": errors}))
"""


def discover(tmp_path: Path, *, installed: bool) -> dict[str, list[list[str]] | dict[str, str]]:
    paths = [str(REPO / "plugins")]
    if installed:
        site = tmp_path / "site"
        dist = site / "tidemark-0.0.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tidemark\nVersion: 0.0.0\n")
        (dist / "entry_points.txt").write_text("[airflow.plugins]\ntidemark = tidemark.airflow.ui.plugin:TidemarkUIPlugin\n")
        paths.insert(0, str(site))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": os.pathsep.join(paths)})
    # cwd: a directory of its own, so no build artefact of the work tree (tidemark.egg-info) is on sys.path.
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, list[list[str]] | dict[str, str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_from_the_plugins_folder(tmp_path: Path) -> None:
    found = discover(tmp_path, installed=False)
    assert found["plugins"] == [["tidemark", "$PLUGINS_FOLDER/tidemark_ui_plugin.py"]]
    assert found["errors"] == {}


def test_from_the_entry_point_with_the_plugins_folder_also_set(tmp_path: Path) -> None:
    found = discover(tmp_path, installed=True)
    assert found["plugins"] == [["tidemark", "tidemark==0.0.0: EntryPoint(name='tidemark', "
                                 "value='tidemark.airflow.ui.plugin:TidemarkUIPlugin', group='airflow.plugins')"]]
    assert found["errors"] == {}  # no "already registered" import error either
