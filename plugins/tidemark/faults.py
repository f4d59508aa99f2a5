"""Fault injection for tests and drills, switched on only by an environment variable.

``TIDEMARK_FAULTS`` holds comma-separated ``point@index`` items, e.g.
``insert_batch.before_commit@3`` or ``insert_batch.after_commit@*``. A
``xN`` suffix (``insert_batch.after_commit@3x1``) fires the fault only the
first N times, and a ``:Name`` after the point (``compress.error:LockNotAvailable@*x1``)
raises that psycopg error class (``psycopg.errors.Name``) instead of
``InjectedFault``, so a test can drive the code's handling of one SQLSTATE; counted in files under ``TIDEMARK_FAULT_DIR`` so the count is
shared by every process (Airflow runs each task try in its own). Reading the
variable at each call (not at import) lets a test clear the fault and rerun
in the same process.
"""

from __future__ import annotations

import os
import re
import time

import psycopg
import psycopg.errors

from tidemark import config
from tidemark.errors import TidemarkError

_ITEM = re.compile(r"^(?P<point>[\w.]+)(?::(?P<error>\w+))?(?:@(?P<where>\*|\d+))?(?:x(?P<times>\d+))?$")


class InjectedFault(TidemarkError):
    """Raised where a test asked for a fault; never raised in normal operation."""


def active(point: str, index: int | None = None) -> bool:
    return _firing(point, index) is not None


def _firing(point: str, index: int | None) -> re.Match[str] | None:
    """The spec item that fires at ``point`` now (counted), or None."""
    spec = config.faults().spec
    for item in filter(None, (s.strip() for s in spec.split(","))):
        m = _ITEM.match(item)
        if not m or m["point"] != point:
            continue
        where = m["where"]
        if where not in (None, "*") and (index is None or where != str(index)):
            continue
        if m["times"] is None or _take(f"{point}@{where or '*'}", int(m["times"])):
            return m
        return None
    return None


def _take(key: str, times: int) -> bool:
    """Count one firing of ``key``; True while fewer than ``times`` have fired."""
    folder = config.faults().counter_dir
    folder.mkdir(parents=True, exist_ok=True)
    counter = folder / key.replace("/", "_")
    with open(counter, "a+") as f:
        f.seek(0)
        fired = len(f.read())
        if fired >= times:
            return False
        f.write("x")
    return True


def check(point: str, index: int | None = None, message: str = "") -> None:
    """Raise the fault asked for at ``point``, if any: InjectedFault, or the psycopg error class named in the spec.

    ``message`` is what an injected database error says first (the text the
    real error would carry, e.g. ``chunk "x" is already compressed``).
    """
    m = _firing(point, index)
    if m is None:
        return
    where = f"injected fault {point}@{index} (TIDEMARK_FAULTS={config.faults().spec!r})"
    if m["error"] is None:
        raise InjectedFault(where)
    cls = getattr(psycopg.errors, m["error"], None)
    if not (isinstance(cls, type) and issubclass(cls, psycopg.Error)):
        raise InjectedFault(f"{where}: {m['error']!r} is not a psycopg.errors class")
    raise cls(f"{message}: {where}" if message else where)


def pause(point: str, index: int | None = None) -> None:
    """Hold still at ``point`` (e.g. inside a transaction) so a test can kill something right there.

    Writes ``TIDEMARK_FAULT_MARKER`` (if set) first, so the test knows the
    moment has come, then sleeps ``TIDEMARK_FAULT_PAUSE`` seconds (default 30).
    """
    if not active(point, index):
        return
    settings = config.faults()
    if settings.marker is not None:
        settings.marker.write_text(f"{point}@{index} pid={os.getpid()}")
    time.sleep(settings.pause_seconds)
