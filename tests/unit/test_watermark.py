from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from tidemark.model.batch import Batch
from tidemark.flows.plan import plan_batches
from tidemark.flows.watermark import Watermark, advance, compute_watermark

UTC = timezone.utc
D0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def make_batches(n: int) -> tuple[Batch, ...]:
    return plan_batches(D0, D0 + n * 6 * H, "6 hours").batches


BATCHES = make_batches(5)


def test_a_in_order_completion_moves_each_time() -> None:
    done: set[int] = set()
    wm = compute_watermark(done, BATCHES)
    assert (wm.completed, wm.last_index, wm.time, wm.complete) == (0, -1, D0, False)
    for i in range(5):
        done.add(i)
        wm = compute_watermark(done, BATCHES)
        assert wm.completed == i + 1
        assert wm.last_index == i
        assert wm.time == BATCHES[i].end
        assert wm.total == 5
        assert wm.complete == (i == 4)


def test_b_out_of_order_jumps() -> None:
    done = {2, 4}
    wm = compute_watermark(done, BATCHES)
    assert wm.last_index == -1
    assert wm.completed == 0
    assert wm.time == D0
    assert not wm.complete

    done.add(0)
    wm = compute_watermark(done, BATCHES)
    assert wm.last_index == 0
    assert wm.time == BATCHES[0].end

    done.add(1)
    wm = compute_watermark(done, BATCHES)
    assert wm.last_index == 2  # jumps over the already finished 2
    assert wm.time == BATCHES[2].end

    done.add(3)
    wm = compute_watermark(done, BATCHES)
    assert wm.last_index == 4
    assert wm.time == BATCHES[4].end
    assert wm.complete


def test_c_never_finishing_batch_holds_watermark() -> None:
    done = {0, 1}
    wm = compute_watermark(done, BATCHES)
    assert wm.last_index == 1
    for later in (3, 4):
        done.add(later)
        wm = compute_watermark(done, BATCHES)
        assert wm.last_index == 1
        assert wm.time == BATCHES[1].end
        assert not wm.complete
    assert done == {0, 1, 3, 4}  # everything but 2 finished


def test_d_single_batch() -> None:
    batches = make_batches(1)
    wm = compute_watermark(set(), batches)
    assert (wm.last_index, wm.time, wm.complete, wm.total) == (-1, D0, False, 1)
    wm = compute_watermark({0}, batches)
    assert (wm.last_index, wm.time, wm.complete) == (0, batches[0].end, True)


def test_e_reverse_then_zero_jumps_once() -> None:
    done: set[int] = set()
    batches = make_batches(4)
    for i in (3, 2, 1):
        done.add(i)
        wm = compute_watermark(done, batches)
        assert wm.last_index == -1
        assert wm.time == D0
    done.add(0)
    wm = compute_watermark(done, batches)
    assert wm.last_index == 3
    assert wm.time == batches[3].end
    assert wm.complete


def test_explicit_start_and_empty_plan() -> None:
    earlier = D0 - H
    wm = compute_watermark([], BATCHES, start=earlier)
    assert wm.time == earlier
    empty = compute_watermark([], (), start=D0)
    assert empty == Watermark(completed=0, total=0, time=D0)
    assert empty.complete
    with pytest.raises(ValueError, match="start"):
        compute_watermark([], ())


@pytest.mark.parametrize("bad", [-1, 5, 99])
def test_out_of_range_index_rejected(bad: int) -> None:
    with pytest.raises(ValueError, match=str(bad)):
        compute_watermark({0, bad}, BATCHES)
    previous = compute_watermark(set(), BATCHES)
    with pytest.raises(ValueError, match=str(bad)):
        advance(previous, {0, bad}, BATCHES)


def test_misindexed_batches_rejected() -> None:
    shuffled = (BATCHES[1], BATCHES[0])
    with pytest.raises(ValueError, match="index"):
        compute_watermark({0}, shuffled)


def test_advance_rejects_watermark_of_other_plan() -> None:
    previous = compute_watermark({0}, make_batches(3))
    with pytest.raises(ValueError, match="3 batches"):
        advance(previous, {0, 1}, BATCHES)


def test_advance_does_not_rescan_prefix() -> None:
    # A persisted watermark says 0..2 are done; advance must trust it rather
    # than re-checking indexes below previous.completed.
    previous = Watermark(completed=3, total=5, time=BATCHES[2].end)
    wm = advance(previous, {3}, BATCHES)
    assert wm.completed == 4
    assert wm.time == BATCHES[3].end


def test_advance_without_progress_keeps_previous() -> None:
    previous = compute_watermark({2}, BATCHES, start=D0 - H)
    again = advance(previous, {2, 4}, BATCHES)
    assert again == previous
    assert again.time == D0 - H


def test_advance_matches_compute_for_random_orders() -> None:
    rng = random.Random(20240101)
    for _ in range(500):
        n = rng.randint(1, 30)
        batches = make_batches(n)
        order = list(range(n))
        rng.shuffle(order)
        never = rng.randrange(n + 1)  # n means every batch finishes
        done: set[int] = set()
        wm = compute_watermark(done, batches)
        for index in order:
            if index == never:
                continue
            done.add(index)
            before = wm
            wm = advance(wm, done, batches)
            expected = compute_watermark(done, batches)
            assert wm == expected
            # Monotone: the watermark never moves backwards.
            assert wm.completed >= before.completed
            assert wm.time >= before.time
        if never < n:
            assert wm.completed == never
            assert not wm.complete
        else:
            assert wm.complete
            assert wm.time == batches[-1].end
