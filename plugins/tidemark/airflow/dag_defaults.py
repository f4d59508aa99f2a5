"""What every Tidemark DAG shares: its id and name for one dataset or none, tags, retries, start date.

A dataset's own DAGs (``tidemark_backfill__flights``) and the generic ones
(``tidemark_backfill``, the dataset a trigger param) are built by the same
functions; this is the one place that says how they differ in name, so the
grid, the tags filter and the Tidemark tab agree on which dataset a DAG is for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tidemark.airflow import names
from tidemark.config import Settings
from tidemark.model.dataset import Dataset

__all__ = ["common", "doc_for"]

_TITLES = {"backfill": "Tidemark backfill", "catchup": "Tidemark catchup", "live": "Tidemark live"}


def common(
    settings: Settings, kind: str, dataset: Dataset | None, description: str, *, register: bool = True
) -> dict[str, Any]:
    """The ``@dag`` arguments every Tidemark DAG of ``kind`` takes, bound to ``dataset`` or generic.

    ``register=False`` builds a DAG Airflow does not pick up from the file
    being parsed (the declarations check builds every DAG only to see that it can).
    """
    title = _TITLES[kind]
    tags = ["tidemark", "timescaledb"] + ([f"dataset:{dataset.name}"] if dataset is not None else [])
    return {
        "dag_id": names.dag_id(kind, dataset.name if dataset is not None else None),
        "dag_display_name": f"{title} · {dataset.name}" if dataset is not None else title,
        "description": f"{description} ({dataset.name})" if dataset is not None else description,
        "start_date": datetime(2024, 1, 1),
        "catchup": False,
        "tags": tags,
        "default_args": settings.task_retries(),  # every task: TIDEMARK_RETRIES after TIDEMARK_RETRY_DELAY
        "auto_register": register,
    }


def doc_for(doc: str, dataset: Dataset | None) -> str:
    """The DAG's documentation, headed by the dataset it loads (where it was declared, what it holds)."""
    if dataset is None:
        return doc
    tables = ", ".join(t.qualified for t in dataset.tables)
    head = [f"**Dataset `{dataset.name}`** - {dataset.description}".rstrip(" -"), "", f"Hypertables: {tables}."]
    if dataset.origin:
        head.append(f"Declared in `{dataset.origin}`.")
    return "\n".join(head) + "\n\n" + doc
