"""The run tab's status strip (one cell per window of the range) and its resume instruction.

Plain Python over what the plugin passes in (task instance states, the plan's
windows, the run's conf) and what Tidemark recorded (ledger rows per window,
the batches' error lines).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

__all__ = ["CELL_STATUS", "WindowInfo", "resume_instruction", "strip"]


class _Task(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def state(self) -> str | None: ...
    @property
    def label(self) -> str | None: ...
    @property
    def try_number(self) -> int: ...


@dataclass(frozen=True)
class WindowInfo:
    """One window of the run's range, from its plan: a batch (``index``) or a window skipped as already loaded."""

    start: datetime
    end: datetime
    label: str
    index: int | None = None


# Airflow task states -> the strip's cell status (anything else - none yet, scheduled, queued, up_for_reschedule,
# deferred, restarting - is "waiting").
CELL_STATUS = {"success": "loaded", "running": "running", "up_for_retry": "retrying", "failed": "failed",
               "upstream_failed": "failed", "skipped": "skipped"}

def resume_instruction(kind: str, run_key: str | None = None, conf: Mapping[str, Any] | None = None,
                       failed: Sequence[int] = ()) -> str:
    """How to finish the run, with its own DAG id, run id, failed batches and params where they are known."""
    dag_id, _, dag_run_id = (run_key or "").partition("/")
    which = f" (batches {', '.join(str(i) for i in failed)})" if failed else ""
    this_run = f"run {dag_run_id!r} of {dag_id}" if dag_run_id else "this run"
    clear = (f"clear the failed task instances of {this_run}{which} - Grid: select them > Clear"
             + (f", or POST /api/v2/dags/{dag_id}/clearTaskInstances with "
                f'{{"dag_run_id": "{dag_run_id}", "only_failed": true, "reset_dag_runs": true, "dry_run": false}}'
                if dag_run_id else ", or REST clearTaskInstances with dag_run_id and only_failed=true"))
    again = (f"a new run with the same params: airflow dags trigger {dag_id} -c '{json.dumps(dict(conf), sort_keys=True)}'"
             if dag_run_id and conf is not None else "a new run with the same params")
    if kind == "catchup":
        return (
            f"Nothing was published: the hypertables and the cursor are untouched. Resume: {clear} (only they reload, "
            f"then publish runs), or trigger {again} (staged batches are reused)."
        )
    return (
        f"The watermark stays at the first failed window until it loads. Resume: {clear}; or trigger {again} - "
        "loaded windows are skipped."
    )


def strip(
    tasks: Sequence[_Task], windows: Sequence[WindowInfo], ledger_rows: Mapping[float, int],
    failures: Sequence[Sequence[Any]] | None,
) -> list[dict[str, Any]]:
    """One cell per window of the range, in time order: loaded, running, waiting, retrying, failed, or skipped as loaded.

    A failed or retrying batch carries its latest try's error line; a batch
    loaded after failed tries carries the last of their errors as ``earlier_error``.
    """
    errors: dict[int, tuple[int, str]] = {}
    for index, try_number, error, _at in failures or []:
        errors[int(index)] = (int(try_number), str(error))  # ordered by try: the last one stays
    by_index = {t.index: t for t in tasks}
    if not windows:  # no plan at hand: the task instances alone
        windows = [WindowInfo(datetime.min, datetime.min, t.label or f"batch {t.index}", t.index)
                   for t in sorted(tasks, key=lambda t: t.index)]
    cells = []
    for w in windows:
        if w.index is None:
            cells.append({"index": None, "window": w.label, "status": "skipped", "note": "already loaded before this run"})
            continue
        ti = by_index.get(w.index)
        if ti is not None and ti.state == "removed":
            continue
        status = CELL_STATUS.get(ti.state or "", "waiting") if ti else "waiting"
        rows = ledger_rows.get(w.start.timestamp()) if w.start != datetime.min else None
        if status == "waiting" and rows is not None:
            status = "loaded"  # committed; Airflow has not marked the task yet
        cell: dict[str, Any] = {"index": w.index, "window": w.label, "status": status,
                                "try_number": ti.try_number if ti else 0, "rows": rows}
        if w.index in errors:
            tried, error = errors[w.index]
            if status in ("failed", "retrying"):
                cell["error"], cell["error_try"] = error, tried
            else:
                cell["earlier_error"], cell["error_try"] = error, tried
        cells.append(cell)
    return cells
