"""The package's rooms and their order (docs/architecture.md): imports point down only, no circle, no giant.

Read from the source with ``ast``, so the rule holds for imports inside
functions too: a lazy import may save start-up time (pyarrow, the UI app) but
never reaches up a floor, which is how a circle would be dodged.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "tidemark"

# Bottom to top. A module may import its own room and any room below it.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("model",),
    ("connection", "state", "config"),
    ("retrying", "faults"),
    ("timescale",),
    ("load",),
    ("sources",),
    ("declare",),
    ("flows",),
    ("demo",),
    ("airflow",),
    ("__init__", "__main__", "cli"),
)
FLOOR = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}
MAX_LINES = 400


def _room(module: str) -> str:
    """``tidemark.load.encoding`` -> ``load``; ``tidemark`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported tidemark module, inside a function?) for every import of Tidemark in the file."""
    tree = ast.parse(path.read_text())
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from tidemark import config`` imports the module tidemark.config; ``from tidemark.x import f``, x.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name == "tidemark" or name.startswith("tidemark."):
                out.append((node.lineno, name, id(node) in inside))
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module an imported name is (``from tidemark.load import arrow_data`` names a module too)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def test_every_room_has_a_floor() -> None:
    rooms = {_room(m) for m in MODULES}
    assert rooms <= set(FLOOR), f"rooms without a floor in this test (and docs/architecture.md): {rooms - set(FLOOR)}"


def test_imports_point_down_only_including_lazy_ones() -> None:
    upward = []
    for module, path in MODULES.items():
        here = FLOOR[_room(module)]
        for line, name, lazy in _imports(path):
            target = _resolve(name)
            if target is None:
                continue
            there = FLOOR[_room(target)]
            if there > here:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
                              f"{' (inside a function)' if lazy else ''}: floor {there} > {here}")
    assert not upward, "\n".join(upward)


def test_no_import_circle_between_modules() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for _, name, _lazy in _imports(path):
            target = _resolve(name)
            if target and target != module and not (target == "tidemark" and name == "tidemark"):
                # A package's __init__ importing its own submodules is how a package exposes them, not a circle.
                if not module.startswith(target + ".") or target == "tidemark":
                    graph[module].add(target)
    graph["tidemark"] = set()  # the root re-exports the public API; nothing may import it but users
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            pytest.fail("import circle: " + " -> ".join(cycle))


def test_nothing_imports_the_package_root() -> None:
    """``tidemark/__init__`` is the public API for users; the package's own modules import where things live."""
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}" for module, path in MODULES.items() if module != "tidemark"
             for line, name, _ in _imports(path) if name == "tidemark"]
    assert not found, found


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
