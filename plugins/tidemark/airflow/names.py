"""Task ids and XCom keys the DAGs, the sensor, the trigger and the UI share: one spelling each."""

from __future__ import annotations

__all__ = [
    "BACKFILL_DAG", "BATCH_TASK", "CATCHUP_DAG", "DECIDE", "DECISION", "FINALIZE", "INGEST", "INSERT_BATCH",
    "LIVE_DAG", "PLAN", "PLAN_KEY", "PUBLISH", "SENSOR", "STAGE_BATCH", "TRIGGER_CATCHUP", "dag_id", "dataset_of", "kind_of",
]

BACKFILL_DAG = "tidemark_backfill"
CATCHUP_DAG = "tidemark_catchup"
LIVE_DAG = "tidemark_live"

# Backfill and catchup
PLAN = "plan"
PLAN_KEY = "plan"  # XCom key of the RunPlan payload beside the plan task's return value (the batches)
INSERT_BATCH = "insert_batch"
SENSOR = "progressive_compress"  # the sensor compresses (direct COPY chunks are left as written)
FINALIZE = "finalize"
STAGE_BATCH = "stage_batch"
PUBLISH = "publish"

# Live
DECIDE = "decide"
DECISION = "decision"  # XCom key of decide's decision
INGEST = "ingest_units"
TRIGGER_CATCHUP = "trigger_catchup"

# The mapped task of each kind of run, whose instances are the run's batches.
BATCH_TASK = {"backfill": INSERT_BATCH, "catchup": STAGE_BATCH}

_KINDS = (("backfill", BACKFILL_DAG), ("catchup", CATCHUP_DAG), ("live", LIVE_DAG))
_BASE = dict(_KINDS)
# A dataset's own DAGs are named base + "__" + dataset: the base is matched first, so a dataset name may
# itself contain "__".
_SEPARATOR = "__"


def dag_id(kind: str, dataset: str | None = None) -> str:
    """``tidemark_backfill`` (the generic DAG, ``dataset=None``) or ``tidemark_backfill__<dataset>``."""
    base = _BASE[kind]
    return base if dataset is None else f"{base}{_SEPARATOR}{dataset}"


def kind_of(dag_id: str) -> str | None:
    """``backfill``, ``catchup`` or ``live`` for one of Tidemark's DAGs, None for any other DAG."""
    for kind, base in _KINDS:
        if dag_id == base or dag_id.startswith(base + _SEPARATOR):
            return kind
    return None


def dataset_of(dag_id: str) -> str | None:
    """The dataset a dataset's own DAG is bound to; None for the generic DAGs (the dataset is a param there)."""
    for _, base in _KINDS:
        if dag_id.startswith(base + _SEPARATOR):
            return dag_id[len(base) + len(_SEPARATOR):]
    return None
