"""The DAG factory: what the DAG files call to get Tidemark's DAGs, one set per declared dataset.

Every declared dataset gets its own DAGs (``tidemark_backfill__<name>``,
``tidemark_catchup__<name>``, and ``tidemark_live__<name>`` where it has a
``live:`` block), each with its own schedule, grid and run history; the
generic ``tidemark_backfill`` and ``tidemark_catchup`` take the dataset as a
trigger param and never run on a schedule.

Nothing here touches a database or an Airflow connection: settings are
read and validated (a bad ``TIDEMARK_*`` value fails the import with a
message naming it), the declarations next to the DAG files are found, and
the sources' connections and file systems are wired to Airflow's. One
dataset that cannot be built never takes the others down: it is left out
and reported by :func:`refuse_bad_declarations`, which the DAG file
``tidemark_declarations.py`` calls so that Airflow shows every refused
declaration as an import error, where users look.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from airflow.sdk import DAG

from tidemark import config, demo
from tidemark.airflow import wiring
from tidemark.declare import catalog
from tidemark.errors import InvalidInput
from tidemark.model.dataset import Dataset

__all__ = ["DeclarationsRefused", "backfill", "catchup", "live", "refuse_bad_declarations"]

log = logging.getLogger(__name__)

# Datasets whose DAGs could not be built in this process, by DAG kind: reported with the refused declarations.
_unbuilt: dict[tuple[str, str], str] = {}


class DeclarationsRefused(InvalidInput):
    """One or more dataset declarations were refused; the others' DAGs are unaffected."""


def _prepare(dag_file: str) -> config.Settings:
    settings = config.load()
    if settings.demo:
        demo.enable()
    wiring.use_dags_folder(Path(dag_file).resolve().parent)
    return settings


def _per_dataset(kind: str, build: Callable[[Dataset], DAG], wanted: Callable[[Dataset], bool]) -> dict[str, DAG]:
    dags: dict[str, DAG] = {}
    for name, ds in catalog.datasets().items():
        try:
            if isinstance(ds, Exception):
                raise ds
            if wanted(ds):
                built = build(ds)
                dags[built.dag_id] = built
            _unbuilt.pop((kind, name), None)
        except Exception as exc:  # noqa: BLE001 - one dataset's failure must not remove every other dataset's DAGs
            message = f"dataset {name!r}: its {kind} DAG cannot be built: {type(exc).__name__}: {str(exc)[:500]}"
            _unbuilt[(kind, name)] = message
            log.error("%s", message)
    return dags


def backfill(dag_file: str, *, register: bool = True) -> dict[str, DAG]:
    """``tidemark_backfill`` and every dataset's ``tidemark_backfill__<name>``, keyed by DAG id."""
    # Each builder is imported where its DAG file asks for it: every task process parses its own DAG file,
    # and the live DAGs' TriggerDagRunOperator alone pulls in Airflow's ORM models (0.46 s a task measured).
    from tidemark.airflow.backfill_dag import backfill_dag

    settings = _prepare(dag_file)
    generic = backfill_dag(settings, register=register)
    return {generic.dag_id: generic, **_per_dataset(
        "backfill", lambda ds: backfill_dag(settings, ds, register=register), lambda _: True)}


def catchup(dag_file: str, *, register: bool = True) -> dict[str, DAG]:
    """``tidemark_catchup`` and every dataset's ``tidemark_catchup__<name>``, keyed by DAG id."""
    from tidemark.airflow.catchup_dag import catchup_dag

    settings = _prepare(dag_file)
    generic = catchup_dag(settings, register=register)
    return {generic.dag_id: generic, **_per_dataset(
        "catchup", lambda ds: catchup_dag(settings, ds, register=register), lambda _: True)}


def live(dag_file: str, *, register: bool = True) -> dict[str, DAG]:
    """``tidemark_live__<name>`` for every dataset declared with a ``live:`` block, keyed by DAG id."""
    from tidemark.airflow.live_dag import live_dag

    settings = _prepare(dag_file)
    return _per_dataset("live", lambda ds: live_dag(settings, ds, register=register), lambda ds: ds.live is not None)


def problems(dag_file: str) -> list[str]:
    """Every refused declaration and every dataset whose DAGs could not be built, one message each.

    Airflow parses each DAG file in a process of its own, so the DAGs are
    built here too (nothing is registered: the DAG file keeps none of them).
    """
    for build in (backfill, catchup, live):
        build(dag_file, register=False)
    return [r.message for r in catalog.errors()] + sorted(_unbuilt.values())


def refuse_bad_declarations(dag_file: str) -> None:
    """Raise one import error naming every refused declaration (file and key), so the Airflow UI shows them.

    Airflow records import errors per DAG file: a DAG file that built every
    dataset's DAGs and also failed for one bad declaration would lose all of
    them. This check has a DAG file of its own, which fails alone.
    """
    found = problems(dag_file)
    if found:
        raise DeclarationsRefused(
            f"{len(found)} Tidemark dataset declaration(s) refused; every other dataset's DAGs are unaffected. "
            "Fix the file and key named below (check files before deploying with `tidemark validate PATH`):\n"
            + "\n".join(f"- {m}" for m in found)
        )
