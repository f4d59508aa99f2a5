"""mypy (strict, plugins/tidemark) and ruff (the whole repo) pass, and `make test` runs both before pytest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_mypy_strict_on_the_core_library() -> None:
    done = run(str(BIN / "mypy"))  # configuration: [tool.mypy] in pyproject.toml
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


def test_ruff_over_the_repo() -> None:
    done = run(str(BIN / "ruff"), "check", ".")  # configuration: [tool.ruff] in pyproject.toml
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


def test_make_test_runs_both_before_pytest() -> None:
    recipe = re.search(r"^test: .*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe, "no test target"
    lines = recipe.group(1).split("\n")
    order = [next(i for i, line in enumerate(lines) if tool in line) for tool in ("-m mypy", "-m ruff check", "-m pytest")]
    assert order == sorted(order), lines
    pinned = (REPO / "requirements.txt").read_text()
    assert re.search(r"^mypy==", pinned, re.M) and re.search(r"^ruff==", pinned, re.M)
