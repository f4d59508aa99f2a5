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

Each declaration is read behind its own boundary: whatever reading one file
or importing one module raises (down to a module calling ``sys.exit``) refuses
that declaration alone, with a bounded message. A hypertable has one owner:
a declaration naming a ``schema.table`` another dataset already declared is
refused, naming both, because each dataset's loads replace windows of its
tables and would delete the other's rows. Code (``register``, the built-in
demo) claims its tables first, then YAML files in path order, then Python
modules, then entry points; the first claim stands.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from tidemark import config
from tidemark.declare.strict_yaml import cut
from tidemark.declare.yaml_files import DETAIL, DeclarationError, load_file
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
_yaml_cache: dict[Path, tuple[tuple[int, int, int], Dataset | Refused]] = {}
MAX_BYTES_SETTING = "TIDEMARK_DATASET_FILE_MAX_BYTES"


def add_search_dir(path: str | Path) -> None:
    """A folder of YAML declarations (the DAG files add their own ``datasets/``)."""
    p = Path(path).resolve()
    if p not in _search_dirs:
        _search_dirs.append(p)


def yaml_dirs() -> list[Path]:
    explicit = config.datasets_dirs()
    if explicit is not None:
        return explicit
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


def _yaml_files(paths: Sequence[Path]) -> list[Path]:
    """The declaration files among ``paths``: a folder's ``*.yaml``/``*.yml`` in name order, a file as given."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        elif os.path.lexists(path):
            files.append(path)
    return files


def _exception_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still refuses only its own declaration
        text = "(its message cannot be shown)"
    return f"{type(exc).__name__}: {cut(' '.join(text.split()), DETAIL)}"


def _read(path: Path, max_bytes: int) -> Dataset | Refused:
    """One file behind its own boundary: anything it raises refuses it alone."""
    try:
        return load_file(path, max_bytes)
    except DeclarationError as exc:
        return Refused(f"dataset file {path}", str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug met by one file must not take the other datasets down
        return Refused(f"dataset file {path}", f"dataset file {path}: cannot be read: {_exception_text(exc)}")


def _yaml_declarations(paths: Sequence[Path] | None = None) -> Iterable[Dataset | Refused]:
    try:
        max_bytes = config.dataset_file_max_bytes()
    except config.InvalidSetting as exc:
        yield Refused(f"setting {MAX_BYTES_SETTING}", f"no dataset file was read: {exc}")
        return
    for path in _yaml_files(yaml_dirs() if paths is None else paths):
        try:
            st = path.stat()
        except OSError:
            try:
                st = path.lstat()  # a dangling symlink (or a loop): refused by the read, not skipped in silence
            except OSError:
                continue  # removed since the folder was listed
        stamp = (st.st_mtime_ns, st.st_size, max_bytes)
        cached = _yaml_cache.get(path)
        if cached is None or cached[0] != stamp:
            found = _read(path, max_bytes)
            _yaml_cache[path] = (stamp, found)
            if isinstance(found, Refused):
                log.warning("%s", found.message)
        yield _yaml_cache[path][1]


def _expand(obj: Any, origin: str) -> list[Dataset]:
    if callable(obj) and not isinstance(obj, Dataset):
        obj = obj()
    items = [obj] if isinstance(obj, Dataset) else list(obj)
    bad = [x for x in items if not isinstance(x, Dataset)]
    if bad:
        raise InvalidInput(f"{origin} gave {type(bad[0]).__name__}, not a tidemark Dataset")
    # Where it came from, for the messages that name two declarations (a name or a table declared twice).
    return [ds if ds.origin else dataclasses.replace(ds, origin=origin) for ds in items]


def _python_declarations() -> tuple[list[Dataset], list[Refused]]:
    global _python_cache
    modules = config.dataset_modules()
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
        # User code may fail in any way, sys.exit() included; it must not break the others. Ctrl-C still stops.
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            refused.append(Refused(origin, f"{origin}: {_exception_text(exc)}"))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {cut(ep.name)} ({cut(ep.value)})"
        try:
            found.extend(_expand(ep.load(), origin))
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            refused.append(Refused(origin, f"{origin}: {_exception_text(exc)}"))
    for r in refused:
        log.warning("%s", r.message)
    _python_cache = (modules, found, refused)
    return found, refused


def _made(make: Callable[[], Dataset]) -> Dataset | None:
    try:
        return make()
    except Exception:  # noqa: BLE001 - its own get() raises this again, where the caller can act on it
        return None


def _collect(yaml_paths: Sequence[Path] | None = None) -> tuple[dict[str, Dataset | Callable[[], Dataset]], list[Refused]]:
    offered: dict[str, Dataset | Callable[[], Dataset]] = dict(_builtin)
    where: dict[str, str] = {name: "built in" for name in _builtin}
    owners: dict[str, tuple[str, str]] = {}  # schema.table -> (dataset, where it was declared)
    refused: list[Refused] = []

    def claim(ds: Dataset, origin: str) -> None:
        for t in ds.tables:
            owners.setdefault(t.qualified, (ds.name, origin))

    def offer(ds: Dataset, origin: str) -> None:
        if ds.name in offered:
            refused.append(Refused(origin, f"{origin}: key name: dataset {ds.name!r} is already declared by "
                                           f"{where[ds.name]}; names must be unique", ds.name))
            return
        for i, t in enumerate(ds.tables):
            owner = owners.get(t.qualified)
            if owner is not None:
                refused.append(Refused(origin, f"{origin}: key tables[{i}].name: table {t.qualified!r} is already "
                                               f"declared by dataset {owner[0]!r} ({owner[1]}); a hypertable has one "
                                               "owner, so rename one of them (or its schema)", ds.name))
                return
        offered[ds.name] = ds
        where[ds.name] = origin
        claim(ds, origin)

    for name, make in _registered.items():
        offered[name] = make  # code registrations (tests, scripts) override on purpose
        where[name] = "registered in code"
    # Code is trusted, never refused: a registration's tables first, then the built-in demo's.
    for name, make in [*_registered.items(), *((n, m) for n, m in _builtin.items() if n not in _registered)]:
        made = _made(make)
        if made is not None:
            claim(made, where[name])
    for found in _yaml_declarations(yaml_paths):
        if isinstance(found, Refused):
            refused.append(found)
        else:
            offer(found, found.origin)
    datasets, python_refused = _python_declarations()
    refused.extend(python_refused)
    for ds in datasets:
        offer(ds, ds.origin or "python module")
    return offered, refused


def check(paths: Sequence[Path]) -> tuple[list[Dataset], list[Refused]]:
    """What the DAG processor would make of ``paths`` (YAML files or folders) as its datasets folders.

    The same reading, the same checks and the same messages as ``names()``
    and ``errors()``; Python modules, entry points, registrations and the
    demo take part as configured, so a clash with one of them shows too.
    """
    offered, refused = _collect(paths)
    datasets = [item if isinstance(item, Dataset) else _made(item) for item in offered.values()]
    return [ds for ds in datasets if ds is not None], refused


def names() -> list[str]:
    return sorted(_collect()[0])


def datasets() -> dict[str, Dataset | Exception]:
    """Every offered dataset by name, from one reading of the declarations; a factory that fails, its exception.

    What the DAG factory builds from: ``names()`` then ``get()`` per name would
    read every declaration again for each dataset (quadratic in their number,
    at every parse of every DAG file).
    """
    out: dict[str, Dataset | Exception] = {}
    for name, item in sorted(_collect()[0].items()):
        try:
            out[name] = item if isinstance(item, Dataset) else item()
        except Exception as exc:  # noqa: BLE001 - one dataset's factory must not take the others' DAGs down
            out[name] = exc
    return out


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
