"""What a trigger asks for: a dataset, a range and a batch interval, validated before anything is written.

Shared by backfill and catchup: the params are checked (dataset known, range
ordered, interval parsed or sized by ``auto``, the batch count within
Airflow's limit) so that a bad trigger fails its plan task once, with a
message saying what to change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tidemark.declare import catalog
from tidemark.errors import InvalidInput
from tidemark.flows.plan import AUTO, auto_interval, check_range, check_span, estimate_rows
from tidemark.model.dataset import Dataset
from tidemark.model.timeparse import format_interval, parse_instant, parse_interval
from tidemark.timescale import policies

__all__ = ["BackfillRequest", "auto_batch_interval"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackfillRequest:
    dataset: str
    start: datetime
    end: datetime
    batch_interval: timedelta
    dry_run: bool = False
    allow_older_than_retention: bool = False  # load history a retention policy will drop (explicit opt-in)

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        *,
        dataset: str | None = None,
    ) -> BackfillRequest:
        """Validate trigger params; empty start/end mean the run's data interval (scheduled runs).

        ``dataset`` is the dataset a dataset's own DAG is bound to: a ``dataset``
        in the run's conf must then name the same one (a conf meant for another
        dataset's DAG is refused rather than silently loading this one).
        """
        given = params.get("dataset")
        if dataset is not None and given not in (None, "", dataset):
            raise InvalidInput(f"this DAG loads dataset {dataset!r}; its conf names {str(given)[:64]!r}: trigger that "
                               f"dataset's own DAG, or leave dataset out")
        name = dataset or given or ""
        if not isinstance(name, str):
            raise InvalidInput(f"dataset must be a dataset's name, got {type(name).__name__}")
        ds = catalog.get(name)  # unknown dataset -> InvalidInput naming the choices
        start_raw = params.get("start") or data_interval_start
        end_raw = params.get("end") or data_interval_end
        if start_raw is None or end_raw is None:
            raise InvalidInput("start and end are required for a manual run (e.g. 2024-01-01T00:00:00+00:00)")
        start = parse_instant(start_raw)
        end = parse_instant(end_raw)
        check_span(start, end)  # before sizing batches from the source, which would read a range it cannot plan
        raw_interval = str(params.get("batch_interval") or AUTO).strip()
        if raw_interval.lower() == AUTO:
            interval = auto_batch_interval(ds, start, end)
        else:
            interval = parse_interval(raw_interval)
        check_range(start, end, interval)  # before any write; the plan task plans once, from the same rule
        if not isinstance(params.get("dry_run", False), bool):  # "yes" or "false" would be read as true
            raise InvalidInput(f"dry_run must be true or false, got {str(params.get('dry_run'))[:64]!r}")
        return cls(name, start, end, interval, params.get("dry_run", False) is True,
                   params.get(policies.ALLOW_PARAM, False) is True)

    def describe(self) -> str:
        return (
            f"{self.dataset} [{self.start.isoformat()}, {self.end.isoformat()}) "
            f"in batches of {format_interval(self.batch_interval)}"
        )


def auto_batch_interval(ds: Dataset, start: datetime, end: datetime) -> timedelta:
    """``batch_interval: auto``: batches sized from the source's density (``plan.auto_interval``).

    The density comes from the source's ``expected_counts`` when it has one,
    else from counting a few sampled windows; a source that offers neither
    gets one chunk interval per batch.
    """
    rows = estimate_rows(ds.feeds(), start, end)
    interval = auto_interval(start, end, rows, min(t.chunk_interval for t in ds.tables))
    log.info("batch_interval auto: %s rows estimated -> batches of %s",
             f"{rows:,}" if rows is not None else "no", format_interval(interval))
    return interval
