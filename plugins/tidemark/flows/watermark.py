"""The backfill watermark: the end of the committed prefix of the run's range, read from the batch ledger.

Batches finish in any order, but compression, backpressure and downstream
readers need one instant before which nothing is missing. The ledger row of
a batch commits in the same transaction as its rows, so the contiguous
prefix of ledger windows from the run's start is exactly what is safe to
compress, known the moment a batch commits: a batch that finishes early never
moves the watermark past a gap, one stuck batch holds it back however many
later ones succeed, and a commit lost in a crash takes its ledger row with it.
There is no second watermark from task states: a task's state can say
success while its commit was lost, the ledger cannot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from tidemark.model.run_plan import RunPlan
from tidemark.state import ledger

__all__ = ["Watermark", "compute", "read"]


@dataclass(frozen=True)
class Watermark:
    """Data before ``time`` is complete; ``completed`` of the plan's ``total`` batches lie behind it."""

    completed: int
    total: int
    time: datetime
    last_commit: datetime | None = None  # the run's latest batch commit, for staleness checks

    @property
    def complete(self) -> bool:
        return self.completed == self.total


def compute(
    plan: RunPlan, loaded: Iterable[tuple[datetime, datetime]], *, since: datetime | None = None,
    last_commit: datetime | None = None,
) -> Watermark:
    """The watermark over ``loaded`` windows (any order, overlapping or touching), from the plan's start.

    ``since`` is a point already known to be inside the prefix (the last
    poke's watermark), so only windows beyond it need to be given.
    """
    mark = max(plan.start, since) if since is not None else plan.start
    for s, e in sorted(loaded):
        if s > mark:
            break
        mark = max(mark, e)
    mark = min(mark, plan.end)
    return Watermark(_behind([b.end for b in plan.batches], mark), len(plan.batches), mark, last_commit)


def read(conn: psycopg.Connection, plan: RunPlan) -> Watermark:
    """The run's watermark now: the last recorded one as a lower bound, then the ledger beyond it.

    Costs O(batches in flight), not O(batches): only the windows beyond the
    recorded watermark are read.
    """
    row = conn.execute(
        "SELECT r.watermark_time, (SELECT max(committed_at) FROM tidemark.batch_ledger l"
        " WHERE l.dataset = r.dataset AND l.run_id = r.run_id) FROM tidemark.runs r WHERE r.run_id = %s",
        (plan.run_id,),
    ).fetchone()
    since = row[0] if row and row[0] is not None else plan.start
    beyond = ledger.loaded_windows(conn, plan.dataset, max(since, plan.start), plan.end)
    return compute(plan, beyond, since=since, last_commit=row[1] if row else None)


def _behind(ends: Sequence[datetime], mark: datetime) -> int:
    """How many batches end at or before ``mark`` (batch ends ascend with their index)."""
    n = 0
    for end in ends:
        if end > mark:
            break
        n += 1
    return n
