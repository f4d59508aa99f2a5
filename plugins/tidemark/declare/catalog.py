"""Which datasets exist: the built-in demo, YAML files, Python modules and installed entry points.

Discovery never raises: a declaration that fails is refused alone, its
error (naming the file or module and the key) kept in ``errors()`` and
logged, so the DAGs still parse and every other dataset is still offered.
Running a refused dataset fails at once with that error, before any write.

Where declarations are found:

* YAML: every ``*.yaml``/``*.yml`` file in ``TIDEMARK_DATASETS_DIR`` if set,
  otherwise in the ``datasets/`` folder next to the DAG files (the DAG files
  register it, so it travels with them into any deployment). Files are
  re-read when they change, so a new file is offered at the next DAG parse.
* Python: modules named in ``TIDEMARK_DATASET_MODULES`` (comma-separated),
  and entry points of the group ``tidemark.datasets``. A module exposes
  ``TIDEMARK_DATASETS`` (a Dataset or an iterable of them, or a function
  returning that); an entry point names such an object.
* Code: ``tidemark.register(dataset)``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from tidemark.declare.yaml_files import DeclarationError, load_file
from tidemark.model.dataset import Dataset
from tidemark.errors import InvalidInput

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tidemark.datasets"


@dataclass(frozen=True)
class Refused:
    origin: str
    message: str
    name: str | None = None


_registered: dict[str, Callable[[], Dataset]] = {}
_builtin: dict[str, Callable[[], Dataset]] = {}
_search_dirs: list[Path] = []
_python_cache: tuple[tuple[str, ...], list[Dataset], list[Refused]] | None = None
_yaml_cache: dict[Path, tuple[tuple[int, int], Dataset | Refused]] = {}


def add_search_dir(path: str | Path) -> None:
    """A folder of YAML declarations (the DAG files add their own ``datasets/``)."""
    p = Path(path).resolve()
    if p not in _search_dirs:
        _search_dirs.append(p)


def yaml_dirs() -> list[Path]:
    explicit = os.environ.get("TIDEMARK_DATASETS_DIR")
    if explicit:
        return [Path(d).resolve() for d in explicit.split(os.pathsep) if d]
    dirs = list(_search_dirs)
    dags = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if dags and (Path(dags) / "datasets").resolve() not in dirs:
        dirs.append((Path(dags) / "datasets").resolve())
    return dirs


def register(dataset: Dataset | str, make: Callable[[], Dataset] | None = None) -> None:
    if isinstance(dataset, Dataset):
        _registered[dataset.name] = lambda: dataset
    elif make is not None:
        _registered[dataset] = make
    else:
        raise TypeError("register(Dataset) or register(name, factory)")


def unregister(name: str) -> None:
    _registered.pop(name, None)


def provide(name: str, make: Callable[[], Dataset]) -> None:
    """A dataset shipped with Tidemark (the demo's ``ledgers``): offered first, never overridden by a file."""
    _builtin[name] = make


def _yaml_declarations() -> Iterable[Dataset | Refused]:
    for folder in yaml_dirs():
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            cached = _yaml_cache.get(path)
            if cached is None or cached[0] != stamp:
                try:
                    found: Dataset | Refused = load_file(path)
                except DeclarationError as exc:
                    found = Refused(str(path), str(exc))
                _yaml_cache[path] = (stamp, found)
                if isinstance(found, Refused):
                    log.warning("%s", found.message)
            yield _yaml_cache[path][1]


def _expand(obj: Any, origin: str) -> list[Dataset]:
    if callable(obj) and not isinstance(obj, Dataset):
        obj = obj()
    if isinstance(obj, Dataset):
        return [obj]
    items = list(obj)
    bad = [x for x in items if not isinstance(x, Dataset)]
    if bad:
        raise InvalidInput(f"{origin} gave {type(bad[0]).__name__}, not a tidemark Dataset")
    return items


def _python_declarations() -> tuple[list[Dataset], list[Refused]]:
    global _python_cache
    modules = tuple(m.strip() for m in os.environ.get("TIDEMARK_DATASET_MODULES", "").split(",") if m.strip())
    if _python_cache is not None and _python_cache[0] == modules:
        return _python_cache[1], _python_cache[2]
    found: list[Dataset] = []
    refused: list[Refused] = []
    for name in modules:
        origin = f"dataset module {name}"
        try:
            module = importlib.import_module(name)
            if not hasattr(module, "TIDEMARK_DATASETS"):
                raise InvalidInput("it defines no TIDEMARK_DATASETS")
            found.extend(_expand(module.TIDEMARK_DATASETS, origin))
        except Exception as exc:  # noqa: BLE001 - user code may fail in any way; it must not break the others
            refused.append(Refused(origin, f"{origin}: {type(exc).__name__}: {exc}"))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {ep.name} ({ep.value})"
        try:
            found.extend(_expand(ep.load(), origin))
        except Exception as exc:  # noqa: BLE001
            refused.append(Refused(origin, f"{origin}: {type(exc).__name__}: {exc}"))
    for r in refused:
        log.warning("%s", r.message)
    _python_cache = (modules, found, refused)
    return found, refused


def _collect() -> tuple[dict[str, Dataset | Callable[[], Dataset]], list[Refused]]:
    offered: dict[str, Dataset | Callable[[], Dataset]] = dict(_builtin)
    where: dict[str, str] = {name: "built in" for name in _builtin}
    refused: list[Refused] = []

    def offer(name: str, item: Dataset | Callable[[], Dataset], origin: str) -> None:
        if name in offered:
            refused.append(Refused(origin, f"{origin}: key name: dataset {name!r} is already declared by "
                                           f"{where[name]}; names must be unique", name))
            return
        offered[name] = item
        where[name] = origin

    for name, make in _registered.items():
        offered[name] = make  # code registrations (tests, scripts) override on purpose
        where[name] = "registered in code"
    for found in _yaml_declarations():
        if isinstance(found, Refused):
            refused.append(found)
        else:
            offer(found.name, found, found.origin)
    datasets, python_refused = _python_declarations()
    refused.extend(python_refused)
    for ds in datasets:
        offer(ds.name, ds, ds.origin or "python module")
    return offered, refused


def names() -> list[str]:
    return sorted(_collect()[0])


def errors() -> list[Refused]:
    return _collect()[1]


def get(name: str) -> Dataset:
    offered, refused = _collect()
    item = offered.get(name)
    if item is None:
        why = [r.message for r in refused if r.name == name or (r.name is None and f"/{name}." in r.origin)]
        if why:
            raise InvalidInput(f"dataset {name!r} was refused: {why[0]}")
        raise InvalidInput(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(offered))}")
    return item if isinstance(item, Dataset) else item()
