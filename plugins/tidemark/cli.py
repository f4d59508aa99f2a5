"""The ``tidemark`` command: ``tidemark validate [PATH…]`` checks dataset files before they are deployed.

A refused declaration otherwise shows only after deploying, as an import
error in the Airflow UI. This runs the catalogue itself (the same reading,
checks and messages as the DAG processor, with the same settings, demo and
Python modules) over the files or folders given, so a CI job or a pre-commit
hook sees exactly what Airflow would, without importing Airflow.

Exit status: 0 when every declaration is accepted (one line per dataset on
stdout), 1 when any is refused (each message on stderr, as the DAG
processor gives it), 2 on a usage error (a missing path, no datasets folder
configured, a bad ``TIDEMARK_*`` setting).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from tidemark import config, demo
from tidemark.declare import catalog
from tidemark.model.dataset import Dataset, Source
from tidemark.model.timeparse import format_interval
from tidemark.sources import registry

__all__ = ["main", "summary"]

USAGE_ERROR = 2


class UsageError(Exception):
    """The command cannot run as asked; the message says what to give instead."""


def _kind(source: Source) -> str:
    """The ``kind:`` a declaration would give: a kind's class, or what its factory function is annotated to return."""
    for name, kind in registry.kinds().items():
        made = kind.build if isinstance(kind.build, type) else typing.get_type_hints(kind.build).get("return")
        if isinstance(made, type) and isinstance(source, made):
            return name
    return type(source).__name__


def summary(ds: Dataset, live_schedule: str) -> str:
    """One line a reviewer can check against what they meant: name, tables, source kinds, schedule, live."""
    kinds = sorted({_kind(source) for source, _ in ds.feeds()})
    parts = [f"{len(ds.tables)} table{'s' if len(ds.tables) != 1 else ''} ({', '.join(t.qualified for t in ds.tables)})",
             f"source {', '.join(kinds)}"]
    if ds.schedule:
        parts.append(f"schedule {ds.schedule}")
    if ds.live is not None:
        when = ds.live.schedule or f"{live_schedule} (TIDEMARK_LIVE_SCHEDULE)"
        parts.append(f"live {when}, unit {format_interval(ds.live.unit)}, catchup at "
                     f"{format_interval(ds.live.lag_threshold)} of lag")
    return f"{ds.name}: {'; '.join(parts)}"


def _as_catalog_sees(path: Path) -> Path:
    """The path as the DAG processor names it (folders resolved, a file kept by name), so messages match."""
    if not os.path.lexists(path):
        raise UsageError(f"{path}: no such file or folder")
    if path.is_dir():
        return path.resolve()
    if path.suffix not in (".yaml", ".yml"):
        raise UsageError(f"{path}: not a .yaml or .yml file (the DAG processor reads only those)")
    return path.absolute().parent.resolve() / path.name


def validate(paths: Sequence[Path]) -> int:
    try:
        settings = config.load()
    except config.InvalidSetting as exc:
        raise UsageError(str(exc)) from None
    if settings.demo:
        demo.enable()  # as the DAG files do: the demo's dataset and source kind take part
    folders = [_as_catalog_sees(p) for p in paths] or catalog.yaml_dirs()
    if not folders:
        raise UsageError("no datasets folder: give PATH, or set TIDEMARK_DATASETS_DIR (or AIRFLOW__CORE__DAGS_FOLDER, "
                         "whose datasets/ folder the DAG files read)")
    for folder in folders:  # Airflow puts the DAG folder on sys.path: a python source's module may live there
        parent = str((folder if folder.is_dir() else folder.parent).parent)
        if parent not in sys.path:
            sys.path.append(parent)
    datasets, refused = catalog.check(folders)
    for ds in sorted(datasets, key=lambda d: d.name):
        print(summary(ds, settings.live_schedule))
    if not datasets and not refused:
        print(f"no dataset declared in {', '.join(map(str, folders))}")
    for r in refused:
        print(r.message, file=sys.stderr)
    if refused:
        print(f"tidemark validate: {len(refused)} declaration(s) refused", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tidemark", description="Tidemark: TimescaleDB backfills from Airflow.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "validate", help="check dataset declarations as the DAG processor will",
        description="Check YAML dataset files (or the folders holding them; default: the configured datasets "
                    "folders) with the DAG processor's own loader. Exit 0: all accepted; 1: some refused; 2: usage.")
    check.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="a .yaml/.yml file or a folder of them")
    args = parser.parse_args(argv)  # a usage error exits with 2
    # The refusals are this command's output; the catalogue's log lines would repeat each on stderr.
    logging.getLogger("tidemark").addHandler(logging.NullHandler())
    try:
        return validate(args.paths)
    except UsageError as exc:
        print(f"tidemark validate: {exc}", file=sys.stderr)
        return USAGE_ERROR
