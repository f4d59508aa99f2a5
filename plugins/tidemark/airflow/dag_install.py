"""``tidemark-dags install DEST``: put Tidemark's DAG files into an Airflow dags folder.

An installed Tidemark (``pip install tidemark``) carries its three DAG files
as package data; Airflow only finds DAGs in its dags folder, so they are
copied there, next to a ``datasets/`` folder for the user's YAML
declarations. Existing files are replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib.resources import files
from pathlib import Path

DAG_FILES = ("tidemark_backfill.py", "tidemark_catchup.py", "tidemark_live.py")


def install(dest: Path, *, force: bool = False) -> list[Path]:
    source = files("tidemark.dag_files")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "datasets").mkdir(exist_ok=True)
    written = []
    for name in DAG_FILES:
        target = dest / name
        if target.exists() and not force:
            raise FileExistsError(f"{target} exists; pass --force to replace it")
        with source.joinpath(name).open("rb") as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tidemark-dags", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="copy the DAG files into an Airflow dags folder")
    p.add_argument("dest", type=Path, help="the Airflow dags folder, e.g. /opt/airflow/dags")
    p.add_argument("--force", action="store_true", help="replace existing Tidemark DAG files")
    args = parser.parse_args(argv)
    try:
        for path in install(args.dest, force=args.force):
            print(f"installed {path}")
    except FileExistsError as exc:
        print(f"tidemark-dags: {exc}", file=sys.stderr)
        return 1
    print(f"put dataset declarations (*.yaml) into {args.dest / 'datasets'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
