"""Deployment settings: every ``TIDEMARK_*`` knob, typed and validated in one place.

DAG files read these at parse time. A bare ``int(os.environ[...])`` there turns
a typo into an opaque DAG import error (``invalid literal for int()``) far from
the variable that caused it; here every value is checked once and a bad one
raises :class:`InvalidSetting` naming the variable, the value it had and what
is allowed, which Airflow then shows as the DAG's import error. The README's
settings table is checked against :data:`SPECS` by the tests, so the two cannot
drift apart.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

from tidemark.errors import TidemarkError

__all__ = ["InvalidSetting", "Settings", "SPECS", "load"]

T = TypeVar("T")

# Presets Airflow accepts as a schedule besides a five-field cron expression.
_SCHEDULE_PRESETS = frozenset({"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"})


class InvalidSetting(TidemarkError):
    """A ``TIDEMARK_*`` environment variable has a value Tidemark cannot use."""


@dataclass(frozen=True)
class Spec(Generic[T]):
    """One setting: its variable, its default as text (or the setting it defaults to) and its meaning."""

    name: str
    parse: Callable[[str], T]
    allowed: str
    default: str | None
    default_from: str | None
    meaning: str


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip())
        if value < minimum:
            raise ValueError(text)
        return value

    return parse


def _seconds(*, allow_zero: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text.strip())
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise ValueError(text)
        return value

    return parse


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(text)


def _write_mode(text: str) -> str:
    value = text.strip().lower()
    if value not in ("auto", "on", "off"):
        raise ValueError(text)
    return value


def _schedule(text: str) -> str:
    value = text.strip()
    if value in _SCHEDULE_PRESETS:
        return value
    from croniter import croniter  # an Airflow dependency; only needed when a schedule is set

    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(text)
    return value


SPECS: tuple[Spec[object], ...] = (
    Spec("TIDEMARK_MAX_PARALLEL_BATCHES", _integer(1), "an integer >= 1", "4", None,
         "how many batches of one run load at the same time (`max_active_tis_per_dagrun`)"),
    Spec("TIDEMARK_MAX_BATCHES_AHEAD", _integer(0), "an integer >= 0 (0 disables backpressure)", None,
         "TIDEMARK_MAX_PARALLEL_BATCHES",
         "backpressure: a batch further than this beyond the watermark waits (0 disables)"),
    Spec("TIDEMARK_POKE_INTERVAL", _seconds(allow_zero=False), "seconds, a number > 0", "10", None,
         "seconds between sensor pokes; keep >= 10 under the scheduler (apache/airflow#71172)"),
    Spec("TIDEMARK_WAIT_INTERVAL", _seconds(allow_zero=False), "seconds, a number > 0", None, "TIDEMARK_POKE_INTERVAL",
         "seconds a waiting batch sleeps before checking again; keep >= 10 under the scheduler too"),
    Spec("TIDEMARK_SENSOR_DEFERRABLE", _boolean, "true or false", "true", None,
         "the sensor waits in the triggerer until every batch has settled (false: it reschedules every "
         "TIDEMARK_POKE_INTERVAL seconds, for a deployment without a triggerer)"),
    Spec("TIDEMARK_DIRECT_COMPRESS", _write_mode, "auto, on or off", "auto", None,
         "direct-to-columnstore COPY: auto = where every hypertable of the dataset allows it, on = wherever a "
         "table allows it, off = classic COPY + progressive compression"),
    Spec("TIDEMARK_RETRIES", _integer(0), "an integer >= 0", "2", None,
         "retries of every task of the three DAGs (bad input is never retried)"),
    Spec("TIDEMARK_RETRY_DELAY", _seconds(allow_zero=True), "seconds, a number >= 0", "5", None,
         "seconds between retries, for every task of the three DAGs"),
    Spec("TIDEMARK_LIVE_SCHEDULE", _schedule, "a five-field cron expression or an Airflow preset such as @hourly",
         "* * * * *", None, "schedule of `tidemark_live`"),
)


@dataclass(frozen=True)
class Settings:
    max_parallel_batches: int
    max_batches_ahead: int
    poke_interval: float
    wait_interval: float
    sensor_deferrable: bool
    direct_compress: str
    retries: int
    retry_delay_seconds: float
    live_schedule: str

    @property
    def retry_delay(self) -> timedelta:
        return timedelta(seconds=self.retry_delay_seconds)

    def task_retries(self) -> dict[str, object]:
        """``retries``/``retry_delay`` for a task decorator: every task of every DAG retries the same way."""
        return {"retries": self.retries, "retry_delay": self.retry_delay}


def _value(spec: Spec[T], env: Mapping[str, str], resolved: Mapping[str, object]) -> T | object:
    raw = env.get(spec.name)
    if raw is None or raw.strip() == "":
        if spec.default_from is not None:
            return resolved[spec.default_from]
        assert spec.default is not None
        return spec.parse(spec.default)
    try:
        return spec.parse(raw)
    except (ValueError, TypeError):
        default = f"the value of {spec.default_from}" if spec.default_from else repr(spec.default)
        raise InvalidSetting(
            f"environment variable {spec.name}={raw!r} is not valid: expected {spec.allowed} "
            f"(unset it for the default, {default})"
        ) from None


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting (``os.environ`` unless ``env`` is given); raises InvalidSetting."""
    source = os.environ if env is None else env
    resolved: dict[str, object] = {}
    for spec in SPECS:
        resolved[spec.name] = _value(spec, source, resolved)
    return Settings(
        max_parallel_batches=_as(int, resolved["TIDEMARK_MAX_PARALLEL_BATCHES"]),
        max_batches_ahead=_as(int, resolved["TIDEMARK_MAX_BATCHES_AHEAD"]),
        poke_interval=_as(float, resolved["TIDEMARK_POKE_INTERVAL"]),
        wait_interval=_as(float, resolved["TIDEMARK_WAIT_INTERVAL"]),
        sensor_deferrable=_as(bool, resolved["TIDEMARK_SENSOR_DEFERRABLE"]),
        direct_compress=_as(str, resolved["TIDEMARK_DIRECT_COMPRESS"]),
        retries=_as(int, resolved["TIDEMARK_RETRIES"]),
        retry_delay_seconds=_as(float, resolved["TIDEMARK_RETRY_DELAY"]),
        live_schedule=_as(str, resolved["TIDEMARK_LIVE_SCHEDULE"]),
    )


def _as(kind: type[T], value: object) -> T:
    if not isinstance(value, kind):
        raise TypeError(f"setting parsed to {type(value).__name__}, expected {kind.__name__}")
    return value
