"""The trigger form's Params shared by the backfill and catchup DAGs: titled, described, JSON-schema validated."""

from __future__ import annotations

from typing import Any

from tidemark.declare import catalog
from tidemark.model import timeparse


INTERVAL_PATTERN = timeparse.INTERVAL_PATTERN  # the parser's own grammar, so form and parser agree


AUTO_INTERVAL_PATTERN = r"^\s*[Aa][Uu][Tt][Oo]\s*$|" + INTERVAL_PATTERN


def dataset_param(purpose: str) -> dict[str, Any]:
    """The generic DAGs' ``dataset`` param: one of the declared datasets, no default (a run names its dataset)."""
    from airflow.sdk import Param

    declared = catalog.names()
    if not declared:
        return {"dataset": Param(
            type="string", title="Dataset",
            description="No dataset is declared in this deployment: add a YAML file to the datasets folder next to "
            "the DAG files (or TIDEMARK_DATASETS_DIR), or name a Python module in TIDEMARK_DATASET_MODULES; see "
            "the README's 'Load your own data'.",
        )}
    return {"dataset": Param(type="string", enum=declared, title="Dataset", description=(
        purpose + " A dataset whose declaration was refused is not offered: its file and key are in the import "
        "error of tidemark_declarations.py (Browse > Import errors) and on the Tidemark runs page."))}


def range_params(
    *, empty_range_means: str | None, default_interval: str, allow_auto: bool = False, generic: bool = True
) -> dict[str, Any]:
    """The trigger-form params shared by the backfill and catchup DAGs (JSON-schema validated).

    ``empty_range_means`` explains what an empty start/end stands for; None
    makes them required. ``generic`` adds the ``dataset`` choice; a dataset's
    own DAG has none (its dataset is part of the DAG).
    """
    from airflow.sdk import Param

    time_type: Any = ["null", "string"] if empty_range_means else "string"
    empty = f" Empty: {empty_range_means}." if empty_range_means else ""
    # The form's date pickers take no offset: say how their value is read rather than ask for one.
    utc = ("Pick a date and time: read as UTC. In the run's JSON conf any ISO 8601 time works, with an offset or "
           "without one (then UTC).")
    return {
        **(dataset_param("The dataset to load (its hypertables and source).") if generic else {}),
        "start": Param(
            None if empty_range_means else "2024-01-01T00:00:00+00:00", type=time_type, format="date-time",
            title="Start (inclusive)",
            description="Beginning of the range. " + utc + empty,
        ),
        "end": Param(
            None if empty_range_means else "2024-01-02T00:00:00+00:00", type=time_type, format="date-time",
            title="End (exclusive)", description="End of the range (not included). " + utc + empty,
        ),
        "batch_interval": Param(
            default_interval, type="string", minLength=1,
            pattern=AUTO_INTERVAL_PATTERN if allow_auto else INTERVAL_PATTERN, title="Batch interval",
            description=(
                "'auto' (sized from the source's density: about 250,000 rows per batch, whole chunks) or the time "
                "covered by one batch, e.g. '3 hours', '1 day', '30 minutes'. At most 1,024 batches per run."
                if allow_auto else
                "Time covered by one batch, e.g. '3 hours', '1 day', '30 minutes'. At most 1,024 batches per run."
            ),
        ),
    }
