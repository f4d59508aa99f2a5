"""Fault injection for tests and drills, switched on only by an environment variable.

``TIDEMARK_FAULTS`` holds comma-separated ``point@index`` items, e.g.
``insert_batch.before_commit@3`` or ``insert_batch.after_commit@*``. Reading
the variable at each call (not at import) lets a test clear the fault and
rerun the same batch in the same process.
"""

from __future__ import annotations

import os

from tidemark.errors import TidemarkError


class InjectedFault(TidemarkError):
    """Raised where a test asked for a fault; never raised in normal operation."""


def active(point: str, index: int | None = None) -> bool:
    spec = os.environ.get("TIDEMARK_FAULTS", "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, where = item.partition("@")
        if name == point and (where in ("", "*") or (index is not None and where == str(index))):
            return True
    return False


def check(point: str, index: int | None = None) -> None:
    if active(point, index):
        raise InjectedFault(f"injected fault {point}@{index} (TIDEMARK_FAULTS={os.environ.get('TIDEMARK_FAULTS')!r})")


def pause(point: str, index: int | None = None) -> None:
    """Hold still at ``point`` (e.g. inside a transaction) so a test can kill the engine right there.

    Writes ``TIDEMARK_FAULT_MARKER`` (if set) first, so the test knows the
    moment has come, then sleeps ``TIDEMARK_FAULT_PAUSE`` seconds (default 30).
    """
    if not active(point, index):
        return
    import time
    from pathlib import Path

    marker = os.environ.get("TIDEMARK_FAULT_MARKER")
    if marker:
        Path(marker).write_text(point)
    time.sleep(float(os.environ.get("TIDEMARK_FAULT_PAUSE", "30")))
