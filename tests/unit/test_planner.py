from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from tidemark.errors import InvalidInput
from tidemark.flows.plan import LATEST_END, MAX_BATCHES, Plan, plan_batches
from tidemark.model.batch import Batch
from tidemark.model.timeparse import parse_interval

UTC = timezone.utc
H = timedelta(hours=1)
D0 = datetime(2024, 1, 1, tzinfo=UTC)


def windows(plan: Plan) -> list[tuple[datetime, datetime]]:
    return [(b.start, b.end) for b in plan.batches]


# -- validation -----------------------------------------------------------


def test_start_after_end_shows_both_values() -> None:
    with pytest.raises(InvalidInput) as excinfo:
        plan_batches("2024-01-02", "2024-01-01", "6 hours")
    message = str(excinfo.value)
    assert "2024-01-02T00:00:00+00:00" in message
    assert "2024-01-01T00:00:00+00:00" in message
    assert "before" in message


def test_start_equal_end_rejected() -> None:
    with pytest.raises(InvalidInput, match="must be before"):
        plan_batches(D0, D0, "6 hours")



@pytest.mark.parametrize(("start", "end", "interval"), [
    ("9999-12-30", "9999-12-31T23:59:59", "1 day"),  # the last window's aligned end was past datetime.max
    ("2024-01-01", "9999-12-31T23:59:59", "30000 days"),
    ("9999-01-01", "9999-01-01T00:00:01", "1 hour"),
])
def test_an_end_past_the_latest_plannable_instant_is_refused_saying_so(start: str, end: str, interval: str) -> None:
    with pytest.raises(InvalidInput, match=r"is later than 9999-01-01T00:00:00\+00:00, the latest end .* move end "
                                           r"earlier"):
        plan_batches(start, end, interval)


def test_an_interval_reaching_past_the_calendar_still_plans_up_to_the_latest_end() -> None:
    plan = plan_batches("9000-01-01", LATEST_END, "999999 days")  # start + interval is beyond year 9999
    assert windows(plan) == [(datetime(9000, 1, 1, tzinfo=UTC), LATEST_END)]

@pytest.mark.parametrize("interval", ["0 hours", "-6 hours", timedelta(0), timedelta(hours=-1)])
def test_non_positive_interval_rejected(interval: str | timedelta) -> None:
    with pytest.raises(InvalidInput, match="must be positive"):
        plan_batches("2024-01-01", "2024-01-02", interval)


def test_unparseable_interval_rejected() -> None:
    with pytest.raises(InvalidInput, match="banana"):
        plan_batches("2024-01-01", "2024-01-02", "banana")


@pytest.mark.parametrize(("start", "end"), [("yesterday", "2024-01-02"), ("2024-01-01", "soon")])
def test_unparseable_instant_rejected(start: str, end: str) -> None:
    with pytest.raises(InvalidInput, match="cannot parse timestamp"):
        plan_batches(start, end, "6 hours")


def test_too_many_windows_suggests_interval_and_split() -> None:
    # 30 days at 30 minutes = 1440 windows > 1024; the smallest fitting
    # interval is 30 days / 1024 = 42.1875 min, rounded up to 43 minutes.
    with pytest.raises(InvalidInput) as excinfo:
        plan_batches("2024-01-01", "2024-01-31", "30 minutes")
    message = str(excinfo.value)
    assert "1440" in message
    assert "1024" in message
    assert "'43 minutes'" in message
    assert "split" in message
    # The suggestion really fits, and one minute less would not.
    assert len(plan_batches("2024-01-01", "2024-01-31", "43 minutes").batches) <= MAX_BATCHES
    with pytest.raises(InvalidInput):
        plan_batches("2024-01-01", "2024-01-31", "42 minutes")


def test_too_many_windows_suggestion_rounds_to_hours_above_an_hour() -> None:
    # 365 days / 1024 = 8.55 hours -> 9 hours.
    with pytest.raises(InvalidInput) as excinfo:
        plan_batches("2023-01-01", "2024-01-01", "1 hour")
    message = str(excinfo.value)
    assert "8760" in message
    assert "'9 hours'" in message
    suggested = re.search(r"at least '([^']+)'", message)
    assert suggested is not None
    plan = plan_batches("2023-01-01", "2024-01-01", suggested.group(1))
    assert len(plan.batches) <= MAX_BATCHES


def test_exactly_max_batches_is_allowed_and_one_more_is_not() -> None:
    plan = plan_batches(D0, D0 + 1024 * H, "1 hour")
    assert len(plan.batches) == 1024
    with pytest.raises(InvalidInput, match="1025"):
        plan_batches(D0, D0 + 1024 * H + timedelta(seconds=1), "1 hour")


def test_custom_max_batches() -> None:
    with pytest.raises(InvalidInput, match="limit of 3"):
        plan_batches(D0, D0 + 4 * H, "1 hour", max_batches=3)
    with pytest.raises(InvalidInput, match="max_batches"):
        plan_batches(D0, D0 + 4 * H, "1 hour", max_batches=0)


def test_validation_happens_before_loaded_is_consumed() -> None:
    consumed = []

    def loaded():  # type: ignore[no-untyped-def]
        consumed.append(True)
        yield (D0, D0 + H)

    with pytest.raises(InvalidInput):
        plan_batches(D0 + H, D0, "1 hour", loaded=loaded())
    assert consumed == []


# -- windows --------------------------------------------------------------


def test_windows_aligned_to_start_and_last_clipped() -> None:
    start = datetime(2024, 1, 1, 1, 17, tzinfo=UTC)
    end = datetime(2024, 1, 2, 2, 0, tzinfo=UTC)
    plan = plan_batches(start, end, "6 hours")
    assert plan.total_windows == 5
    assert [b.index for b in plan.batches] == [0, 1, 2, 3, 4]
    assert windows(plan) == [
        (start, start + 6 * H),
        (start + 6 * H, start + 12 * H),
        (start + 12 * H, start + 18 * H),
        (start + 18 * H, start + 24 * H),
        (start + 24 * H, end),  # clipped: 43 minutes long
    ]
    assert plan.batches[-1].end - plan.batches[-1].start == timedelta(minutes=43)
    assert plan.skipped == ()
    assert plan.start == start and plan.end == end and plan.interval == 6 * H


def test_exact_division_has_no_short_window() -> None:
    plan = plan_batches("2024-01-01", "2024-01-02", "6 hours")
    assert plan.total_windows == 4
    assert all(b.end - b.start == 6 * H for b in plan.batches)
    assert plan.batches[-1].end == datetime(2024, 1, 2, tzinfo=UTC)


def test_interval_larger_than_range_gives_one_clipped_window() -> None:
    plan = plan_batches("2024-01-01T00:00", "2024-01-01T02:00", "1 day")
    assert windows(plan) == [(D0, D0 + 2 * H)]


def test_accepts_strings_and_converts_to_utc() -> None:
    plan = plan_batches("2024-01-01T02:00+02:00", "2024-01-01T12:00Z", "PT6H")
    assert plan.start == D0
    assert plan.start.tzinfo is UTC
    assert windows(plan) == [(D0, D0 + 6 * H), (D0 + 6 * H, D0 + 12 * H)]


def test_windows_are_contiguous_and_cover_range() -> None:
    start = datetime(2024, 3, 1, 0, 0, 7, tzinfo=UTC)
    end = datetime(2024, 3, 9, 13, 5, tzinfo=UTC)
    plan = plan_batches(start, end, "7 hours 13 minutes")
    assert plan.batches[0].start == start
    assert plan.batches[-1].end == end
    for previous, current in zip(plan.batches, plan.batches[1:]):
        assert previous.end == current.start
        assert previous.start < previous.end


# -- skipping loaded windows ----------------------------------------------


def test_skip_exactly_loaded_windows_and_reindex() -> None:
    loaded = [(D0 + 6 * H, D0 + 12 * H), (D0, D0 + 6 * H)]
    plan = plan_batches(D0, D0 + 24 * H, "6 hours", loaded=loaded)
    assert plan.total_windows == 4
    assert plan.skipped == ((D0, D0 + 6 * H), (D0 + 6 * H, D0 + 12 * H))
    assert [b.index for b in plan.batches] == [0, 1]
    assert windows(plan) == [(D0 + 12 * H, D0 + 18 * H), (D0 + 18 * H, D0 + 24 * H)]


def test_skip_with_unaligned_overlapping_unordered_loaded_windows() -> None:
    # Union covers [00:00, 13:30) and [17:00, 30:00); only windows entirely inside are skipped.
    loaded = [
        (D0 + 5 * H, D0 + 13 * H + timedelta(minutes=30)),
        (D0 + 17 * H, D0 + 20 * H),
        (D0 - 3 * H, D0 + 2 * H),
        (D0 + timedelta(minutes=90), D0 + 7 * H),  # overlaps both neighbours
        (D0 + 20 * H, D0 + 30 * H),  # touches the previous one
    ]
    plan = plan_batches(D0, D0 + 36 * H, "6 hours", loaded=loaded)
    assert plan.skipped == (
        (D0, D0 + 6 * H),
        (D0 + 6 * H, D0 + 12 * H),
        (D0 + 18 * H, D0 + 24 * H),
        (D0 + 24 * H, D0 + 30 * H),
    )
    assert windows(plan) == [
        (D0 + 12 * H, D0 + 18 * H),  # partly loaded: must reload
        (D0 + 30 * H, D0 + 36 * H),
    ]
    assert [b.index for b in plan.batches] == [0, 1]


def test_partially_covered_window_is_not_skipped() -> None:
    loaded = [(D0, D0 + 6 * H - timedelta(microseconds=1))]
    plan = plan_batches(D0, D0 + 12 * H, "6 hours", loaded=loaded)
    assert plan.skipped == ()
    assert len(plan.batches) == 2


def test_clipped_last_window_can_be_skipped() -> None:
    end = D0 + 14 * H
    plan = plan_batches(D0, end, "6 hours", loaded=[(D0 + 12 * H, end)])
    assert plan.skipped == ((D0 + 12 * H, end),)
    assert [b.index for b in plan.batches] == [0, 1]


def test_everything_loaded_gives_empty_batches() -> None:
    plan = plan_batches(D0, D0 + 24 * H, "6 hours", loaded=[("2023-12-31", "2024-01-02")])
    assert plan.batches == ()
    assert len(plan.skipped) == 4
    assert plan.total_windows == 4


def test_interleaved_skips_reindex_in_time_order() -> None:
    loaded = [(D0 + i * H, D0 + (i + 1) * H) for i in range(0, 10, 2)]
    plan = plan_batches(D0, D0 + 10 * H, "1 hour", loaded=loaded)
    assert [b.index for b in plan.batches] == [0, 1, 2, 3, 4]
    assert [b.start for b in plan.batches] == [D0 + i * H for i in range(1, 10, 2)]
    assert sorted(plan.batches) == list(plan.batches)


def test_bad_loaded_window_rejected() -> None:
    with pytest.raises(InvalidInput, match="after its end"):
        plan_batches(D0, D0 + 6 * H, "1 hour", loaded=[(D0 + H, D0)])
    with pytest.raises(InvalidInput, match=r"\(start, end\) pair"):
        plan_batches(D0, D0 + 6 * H, "1 hour", loaded=[(D0,)])  # type: ignore[list-item]


def test_empty_loaded_window_ignored() -> None:
    plan = plan_batches(D0, D0 + 6 * H, "1 hour", loaded=[(D0, D0)])
    assert len(plan.batches) == 6


# -- Batch ------------------------------------------------------------------


def test_batch_dict_round_trip_and_json() -> None:
    plan = plan_batches("2024-01-01T01:17", "2024-01-03", "5 hours")
    for batch in plan.batches:
        d = batch.to_dict()
        assert d == {"index": batch.index, "start": batch.start.isoformat(), "end": batch.end.isoformat()}
        encoded = json.dumps(d)
        restored = Batch.from_dict(json.loads(encoded))
        assert restored == batch
        assert restored.start.tzinfo is not None
    assert plan.batches[0].to_dict() == {
        "index": 0,
        "start": "2024-01-01T01:17:00+00:00",
        "end": "2024-01-01T06:17:00+00:00",
    }


def test_batch_from_dict_rejects_bad_dicts() -> None:
    with pytest.raises(InvalidInput, match="end"):
        Batch.from_dict({"index": 0, "start": "2024-01-01"})
    with pytest.raises(InvalidInput, match="integer"):
        Batch.from_dict({"index": "0", "start": "2024-01-01", "end": "2024-01-02"})


def test_batch_requires_aware_ordered_window() -> None:
    with pytest.raises(ValueError):
        Batch(0, D0 + H, D0)
    with pytest.raises(ValueError):
        Batch(0, datetime(2024, 1, 1), datetime(2024, 1, 2))


def test_batch_is_frozen_and_ordered_by_index() -> None:
    a = Batch(0, D0, D0 + H)
    b = Batch(1, D0 + H, D0 + 2 * H)
    assert a < b
    with pytest.raises(AttributeError):
        a.index = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("batch", "label"),
    [
        (Batch(3, D0 + 6 * H, D0 + 12 * H), "#3 2024-01-01 06:00 → 12:00"),
        (Batch(0, D0 + 18 * H, D0 + 24 * H), "#0 2024-01-01 18:00 → 2024-01-02 00:00"),
        (Batch(7, D0 + 22 * H, D0 + 28 * H), "#7 2024-01-01 22:00 → 2024-01-02 04:00"),
        (Batch(1, D0, D0 + timedelta(seconds=90)), "#1 2024-01-01 00:00:00 → 00:01:30"),
    ],
)
def test_batch_label(batch: Batch, label: str) -> None:
    assert batch.label == label


# -- scale ------------------------------------------------------------------


def test_planning_a_thousand_windows_with_many_loaded() -> None:
    # Speed is measured in bench/, not asserted here.
    loaded = [(D0 + i * 3 * H, D0 + (i * 3 + 1) * H) for i in range(0, 1000)]
    plan = plan_batches(D0, D0 + 1000 * H, "1 hour", loaded=loaded)
    assert plan.total_windows == 1000
    assert len(plan.skipped) == 334
    assert len(plan.batches) == 666


def test_interval_parse_matches_planner_interval() -> None:
    plan = plan_batches(D0, D0 + 24 * H, "1 day 6 hours")
    assert plan.interval == parse_interval("30 hours")
    assert windows(plan) == [(D0, D0 + 24 * H)]
