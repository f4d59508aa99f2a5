"""Wiring the core to Airflow for one DAG folder: its declarations, the sources' connections and file systems."""

from __future__ import annotations

from pathlib import Path

from tidemark.declare import catalog
from tidemark.sources import access

from tidemark.airflow import heap
from tidemark.airflow.hooks import connection_factory, object_storage


def use_dags_folder(folder: Path) -> None:
    """Wire the core to Airflow for this DAG folder: its ``datasets/`` declarations, connections, object storage.

    Called by each DAG file at import (no database or connection is touched
    here): the same process later runs the tasks, which then open user
    sources' connections through PostgresHook and their files through
    ObjectStoragePath.
    """
    catalog.add_search_dir(folder / "datasets")
    access.set_openers(connections=connection_factory, filesystems=object_storage)
    heap.skip_collections_at_exit()
    heap.freeze_if_parsed_to_run()
