"""When a dataset loads on its own: a schedule for backfill runs, and a live block for ingestion.

Both are part of a declaration, so a team gives each dataset its own rhythm
(one hourly, one daily, one live every minute) instead of sharing one
deployment-wide schedule. They are plain values checked when declared: a
schedule Airflow would refuse at parse time would otherwise take the
dataset's DAGs down with it, far from the file that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from croniter import croniter  # an Airflow dependency

from tidemark.errors import InvalidInput
from tidemark.model.timeparse import format_interval, parse_interval

__all__ = ["DEFAULT_LAG_THRESHOLD", "DEFAULT_LIVE_UNIT", "PRESETS", "Live", "parse_schedule"]

# Presets Airflow accepts as a schedule besides a five-field cron expression. @once and @continuous
# are left out: neither has the data intervals a backfill run loads.
PRESETS = frozenset({"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"})

DEFAULT_LIVE_UNIT = timedelta(minutes=5)
DEFAULT_LAG_THRESHOLD = timedelta(hours=1)


def parse_schedule(value: object, what: str = "schedule") -> str:
    """A cron expression (five fields) or an Airflow preset such as ``@daily``; InvalidInput otherwise."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a cron expression or a preset such as @daily, got {type(value).__name__}")
    text = value.strip()
    if text in PRESETS:
        return text
    if len(text.split()) != 5 or not croniter.is_valid(text):
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise InvalidInput(
            f"{what} {shown!r} is neither a five-field cron expression (e.g. '0 * * * *') nor one of "
            f"{', '.join(sorted(PRESETS))}"
        )
    return text


@dataclass(frozen=True)
class Live:
    """A dataset's live ingestion: how often it runs, the unit per transaction, when it hands over to catchup."""

    schedule: str | None = None  # None: the deployment's TIDEMARK_LIVE_SCHEDULE
    unit: timedelta = DEFAULT_LIVE_UNIT
    lag_threshold: timedelta = DEFAULT_LAG_THRESHOLD

    def __post_init__(self) -> None:
        if self.schedule is not None:
            object.__setattr__(self, "schedule", parse_schedule(self.schedule, "live.schedule"))
        object.__setattr__(self, "unit", parse_interval(self.unit))
        object.__setattr__(self, "lag_threshold", parse_interval(self.lag_threshold))
        if self.lag_threshold < self.unit:
            raise InvalidInput(
                f"live.lag_threshold {format_interval(self.lag_threshold)!r} is shorter than live.unit "
                f"{format_interval(self.unit)!r}: every lag would go to catchup"
            )
