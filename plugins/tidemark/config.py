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
from pathlib import Path
from typing import Generic, TypeVar

from tidemark.errors import InvalidInput, TidemarkError
from tidemark.model.schedule import parse_schedule

__all__ = [
    "Faults", "InvalidSetting", "Settings", "SPECS", "dataset_file_max_bytes", "dataset_modules", "datasets_dirs",
    "direct_compress", "faults", "files_roots",
    "load", "setting",
]

T = TypeVar("T")

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


def _folders(text: str) -> tuple[Path, ...]:
    # Absolute only: each process (dag-processor, every worker) would resolve a relative one against its own cwd.
    if text.strip() == "none":
        return ()
    folders = tuple(Path(d.strip()) for d in text.split(os.pathsep) if d.strip())
    if not folders or not all(f.is_absolute() for f in folders):
        raise ValueError(text)
    return folders


def _schedule(text: str) -> str:
    value = text.strip()
    if value in ("@once", "@continuous"):
        return value
    try:
        return parse_schedule(value)
    except InvalidInput:
        raise ValueError(text) from None


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
         "* * * * *", None, "schedule of a dataset's live DAG when its `live:` block gives none"),
    Spec("TIDEMARK_DEMO", _boolean, "on or off", "off", None,
         "declare the demo's synthetic `ledgers` dataset (`make demo`, `make test`, `make bench` and `make airflow` "
         "switch it on; never on in production)"),
    Spec("TIDEMARK_DATASET_FILE_MAX_BYTES", _integer(1), "an integer >= 1 (bytes)", "1048576", None,
         "a dataset file (YAML) larger than this is refused without being read"),
    Spec("TIDEMARK_FILES_ROOTS", _folders, f"absolute folders, separated by {os.pathsep!r}", "none", None,
         "folders a files source may read local files from, besides its declaration's own folder (symlinks "
         "resolved); any other local path or file:// URL is refused"),
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
    demo: bool

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
        demo=_as(bool, resolved["TIDEMARK_DEMO"]),
    )


def _as(kind: type[T], value: object) -> T:
    if not isinstance(value, kind):
        raise TypeError(f"setting parsed to {type(value).__name__}, expected {kind.__name__}")
    return value


def setting(name: str, env: Mapping[str, str] | None = None) -> object:
    """One setting of :data:`SPECS`, read and validated alone (for core code that needs just that one).

    A setting that defaults to another resolves through it, so this agrees
    with :func:`load` value for value.
    """
    source = os.environ if env is None else env
    resolved: dict[str, object] = {}
    for spec in SPECS:
        resolved[spec.name] = _value(spec, source, resolved)
        if spec.name == name:
            return resolved[name]
    raise KeyError(f"no setting {name}")


def direct_compress(env: Mapping[str, str] | None = None) -> str:
    """``TIDEMARK_DIRECT_COMPRESS``: ``auto``, ``on`` or ``off``."""
    return _as(str, setting("TIDEMARK_DIRECT_COMPRESS", env))


def dataset_file_max_bytes(env: Mapping[str, str] | None = None) -> int:
    """``TIDEMARK_DATASET_FILE_MAX_BYTES``, read alone: the catalogue must not fail on another setting's typo."""
    spec = next(s for s in SPECS if s.name == "TIDEMARK_DATASET_FILE_MAX_BYTES")
    return _as(int, _value(spec, os.environ if env is None else env, {}))


def files_roots(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """``TIDEMARK_FILES_ROOTS``, read alone (a files source asks at declaration and at every read)."""
    spec = next(s for s in SPECS if s.name == "TIDEMARK_FILES_ROOTS")
    return tuple(Path(p) for p in _as(tuple, _value(spec, os.environ if env is None else env, {})))


# Where declarations are found. Not in SPECS: they are paths and module names, not tuning, and the
# README documents them with the declarations ("Load your own data").
def datasets_dirs(env: Mapping[str, str] | None = None) -> list[Path] | None:
    """``TIDEMARK_DATASETS_DIR``: the folders of YAML declarations (``os.pathsep``-separated), None if unset."""
    raw = (os.environ if env is None else env).get("TIDEMARK_DATASETS_DIR", "")
    if not raw.strip():
        return None
    folders = [Path(d.strip()) for d in raw.split(os.pathsep) if d.strip()]
    relative = [str(f) for f in folders if not f.is_absolute()]
    if relative:
        # Each process (dag-processor, every worker) would resolve it against its own working directory.
        raise InvalidSetting(f"environment variable TIDEMARK_DATASETS_DIR={raw!r} is not valid: {relative[0]!r} is a "
                             "relative path; give absolute folders, the same on every machine")
    return [f.resolve() for f in folders]


def dataset_modules(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``TIDEMARK_DATASET_MODULES``: Python modules declaring datasets (comma-separated)."""
    raw = (os.environ if env is None else env).get("TIDEMARK_DATASET_MODULES", "")
    return tuple(m.strip() for m in raw.split(",") if m.strip())


@dataclass(frozen=True)
class Faults:
    """Fault injection for tests and drills (``tidemark.faults``); empty ``spec`` in normal operation."""

    spec: str
    counter_dir: Path
    marker: Path | None
    pause_seconds: float


def faults(env: Mapping[str, str] | None = None) -> Faults:
    """``TIDEMARK_FAULTS`` and ``TIDEMARK_FAULT_*``, read at each call so a test can change them between runs."""
    source = os.environ if env is None else env
    marker = source.get("TIDEMARK_FAULT_MARKER")
    pause = source.get("TIDEMARK_FAULT_PAUSE", "").strip()
    try:
        pause_seconds = _seconds(allow_zero=True)(pause) if pause else 30.0
    except ValueError:
        raise InvalidSetting(f"environment variable TIDEMARK_FAULT_PAUSE={pause!r} is not valid: "
                             "expected seconds, a number >= 0") from None
    return Faults(
        spec=source.get("TIDEMARK_FAULTS", ""),
        counter_dir=Path(source.get("TIDEMARK_FAULT_DIR") or "/tmp/tidemark-faults"),
        marker=Path(marker) if marker else None,
        pause_seconds=pause_seconds,
    )
