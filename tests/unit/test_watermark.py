"""The watermark is the contiguous prefix of committed windows from the run's start (flows.watermark.compute)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import pytest

from tidemark.flows.plan import plan_batches
from tidemark.flows.watermark import Watermark, compute
from tidemark.model.run_plan import PayloadMismatch, RunPlan

UTC = timezone.utc
D0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def make_plan(n: int, *, loaded_before: Iterable[tuple[datetime, datetime]] = ()) -> RunPlan:
    planned = plan_batches(D0, D0 + n * 6 * H, "6 hours", loaded=loaded_before)
    return RunPlan("run", "ds", D0, D0 + n * 6 * H, 6 * H, planned.batches, planned.skipped)


PLAN = make_plan(5)


def committed(plan: RunPlan, done: Iterable[int]) -> list[tuple[datetime, datetime]]:
    """The ledger windows of these batches, plus the windows loaded before the run."""
    return [(plan.batch(i).start, plan.batch(i).end) for i in done] + list(plan.skipped)


def wm_of(done: Iterable[int], plan: RunPlan = PLAN) -> Watermark:
    return compute(plan, committed(plan, done))


def test_a_in_order_completion_moves_each_time() -> None:
    done: set[int] = set()
    wm = wm_of(done)
    assert (wm.completed, wm.time, wm.complete) == (0, D0, False)
    for i in range(5):
        done.add(i)
        wm = wm_of(done)
        assert wm.completed == i + 1
        assert wm.time == PLAN.batch(i).end
        assert wm.total == 5
        assert wm.complete == (i == 4)


def test_b_out_of_order_jumps() -> None:
    done = {2, 4}
    wm = wm_of(done)
    assert (wm.completed, wm.time, wm.complete) == (0, D0, False)
    done.add(0)
    assert wm_of(done).time == PLAN.batch(0).end
    done.add(1)
    wm = wm_of(done)
    assert wm.completed == 3  # jumps over the already finished 2
    assert wm.time == PLAN.batch(2).end
    done.add(3)
    wm = wm_of(done)
    assert wm.completed == 5 and wm.time == PLAN.batch(4).end and wm.complete


def test_c_never_finishing_batch_holds_watermark() -> None:
    done = {0, 1}
    for later in (3, 4):
        done.add(later)
        wm = wm_of(done)
        assert wm.completed == 2
        assert wm.time == PLAN.batch(1).end
        assert not wm.complete


def test_d_single_batch() -> None:
    plan = make_plan(1)
    assert (wm_of(set(), plan).time, wm_of(set(), plan).complete, wm_of(set(), plan).total) == (D0, False, 1)
    wm = wm_of({0}, plan)
    assert (wm.completed, wm.time, wm.complete) == (1, plan.batch(0).end, True)


def test_e_reverse_then_zero_jumps_once() -> None:
    plan = make_plan(4)
    done: set[int] = set()
    for i in (3, 2, 1):
        done.add(i)
        assert wm_of(done, plan).time == D0
    done.add(0)
    wm = wm_of(done, plan)
    assert wm.completed == 4 and wm.time == plan.batch(3).end and wm.complete


def test_windows_loaded_before_the_run_are_inside_the_prefix() -> None:
    plan = make_plan(4, loaded_before=[(D0, D0 + 12 * H)])  # the first two windows: skipped
    assert len(plan.batches) == 2 and plan.total_windows == 4
    assert wm_of(set(), plan).time == D0 + 12 * H
    assert wm_of({0}, plan).time == D0 + 18 * H


def test_since_is_a_lower_bound_and_the_watermark_stays_inside_the_range() -> None:
    # A recorded watermark: only windows beyond it need to be read.
    wm = compute(PLAN, committed(PLAN, {3}), since=PLAN.batch(2).end)
    assert wm.completed == 4 and wm.time == PLAN.batch(3).end
    # Windows committed beyond the run's end (another run's) never carry it past the end.
    wm = compute(PLAN, committed(PLAN, range(5)) + [(PLAN.end, PLAN.end + H)])
    assert wm.time == PLAN.end and wm.complete


def test_an_empty_plan_is_complete_at_its_start() -> None:
    empty = RunPlan("run", "ds", D0, D0 + H, H, ())
    assert compute(empty, []) == Watermark(completed=0, total=0, time=D0)
    assert compute(empty, []).complete


def test_a_plan_with_misindexed_batches_is_refused() -> None:
    shuffled = (PLAN.batch(1), PLAN.batch(0))
    with pytest.raises(PayloadMismatch, match="index"):
        RunPlan("run", "ds", D0, PLAN.end, 6 * H, shuffled)


def test_random_commit_orders_are_monotone_and_stop_at_the_gap() -> None:
    rng = random.Random(20240101)
    for _ in range(300):
        n = rng.randint(1, 30)
        plan = make_plan(n)
        order = list(range(n))
        rng.shuffle(order)
        never = rng.randrange(n + 1)  # n means every batch finishes
        done: set[int] = set()
        wm = wm_of(done, plan)
        for index in order:
            if index == never:
                continue
            done.add(index)
            before, wm = wm, wm_of(done, plan)
            assert wm.completed >= before.completed and wm.time >= before.time
            assert wm.completed == next(k for k in range(n + 1) if k == n or k not in done)
        if never < n:
            assert wm.completed == never and not wm.complete
