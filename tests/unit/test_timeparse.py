from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from tidemark.errors import InvalidInput, TidemarkError
from tidemark.model.timeparse import format_interval, parse_instant, parse_interval

UTC = timezone.utc


def test_invalid_input_is_a_tidemark_error() -> None:
    assert issubclass(InvalidInput, TidemarkError)
    assert issubclass(TidemarkError, Exception)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T06:00", datetime(2024, 1, 1, 6, tzinfo=UTC)),
        ("2024-01-01T06:00:00Z", datetime(2024, 1, 1, 6, tzinfo=UTC)),
        ("2024-01-01t06:00:00z", datetime(2024, 1, 1, 6, tzinfo=UTC)),
        ("2024-01-01 06:00:00", datetime(2024, 1, 1, 6, tzinfo=UTC)),
        ("2024-01-01T06:00:00+02:00", datetime(2024, 1, 1, 4, tzinfo=UTC)),
        ("2024-01-01 01:00-05:00", datetime(2024, 1, 1, 6, tzinfo=UTC)),
        ("  2024-01-01T06:00:00.250Z  ", datetime(2024, 1, 1, 6, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_parse_instant_strings(text: str, expected: datetime) -> None:
    result = parse_instant(text)
    assert result == expected
    assert result.tzinfo is UTC


def test_parse_instant_datetimes() -> None:
    naive = datetime(2024, 5, 1, 12, 30)
    assert parse_instant(naive) == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    offset = datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=-3)))
    result = parse_instant(offset)
    assert result == datetime(2024, 5, 1, 15, 30, tzinfo=UTC)
    assert result.tzinfo is UTC
    assert result.hour == 15
    assert parse_instant(date(2024, 5, 1)) == datetime(2024, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["", "   ", "yesterday", "2024-13-01", "2024-01-01x06:00", "01/02/2024"])
def test_parse_instant_rejects_garbage_with_example(bad: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        parse_instant(bad)
    message = str(excinfo.value)
    assert "2024-01-01" in message  # gives an example to copy
    if bad.strip():
        assert repr(bad) in message  # names the offending value



@pytest.mark.parametrize("text", ["9999-12-31T23:00:00-02:00", "0001-01-01T00:30:00+01:00"])
def test_parse_instant_refuses_an_instant_outside_the_calendar_in_utc(text: str) -> None:
    with pytest.raises(InvalidInput, match="out of range in UTC"):
        parse_instant(text)

def test_parse_instant_rejects_non_string() -> None:
    with pytest.raises(InvalidInput, match="int"):
        parse_instant(12345)  # type: ignore[arg-type]


H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6 hours", 6 * H),
        ("1 hour", H),
        ("1 day", timedelta(days=1)),
        ("30 minutes", timedelta(minutes=30)),
        ("90 seconds", timedelta(seconds=90)),
        ("1 week", timedelta(weeks=1)),
        ("2 weeks", timedelta(weeks=2)),
        ("1 day 6 hours", timedelta(days=1, hours=6)),
        ("1 day, 6 hours and 30 minutes", timedelta(days=1, hours=6, minutes=30)),
        ("6h", 6 * H),
        ("6 h", 6 * H),
        ("6hr", 6 * H),
        ("6 hrs", 6 * H),
        ("30min", timedelta(minutes=30)),
        ("30 mins", timedelta(minutes=30)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("90 sec", timedelta(seconds=90)),
        ("90 secs", timedelta(seconds=90)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5 hours", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        (".5 days", 12 * H),
        ("0.1 seconds", timedelta(milliseconds=100)),
        ("250ms", timedelta(milliseconds=250)),
        ("6 HOURS", 6 * H),
        ("  6 hours  ", 6 * H),
        ("06:00:00", 6 * H),
        ("1:30:00", timedelta(minutes=90)),
        ("00:00:30.5", timedelta(seconds=30.5)),
        ("1 day 06:00:00", timedelta(days=1, hours=6)),
        ("PT6H", 6 * H),
        ("pt6h", 6 * H),
        ("P1D", timedelta(days=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT30M", timedelta(minutes=30)),
        ("PT1H30M15S", timedelta(hours=1, minutes=30, seconds=15)),
        ("P1W", timedelta(weeks=1)),
        ("PT1.5H", timedelta(minutes=90)),
        ("PT0,5H", timedelta(minutes=30)),
    ],
)
def test_parse_interval_forms(text: str, expected: timedelta) -> None:
    assert parse_interval(text) == expected


def test_parse_interval_passes_positive_timedelta_through() -> None:
    assert parse_interval(timedelta(hours=6)) == timedelta(hours=6)


@pytest.mark.parametrize("bad", ["1 month", "2 months", "1 mon", "1 year", "1y", "2 yrs", "P1M", "P1Y", "P1Y2M"])
def test_parse_interval_rejects_calendar_units(bad: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        parse_interval(bad)
    message = str(excinfo.value)
    assert "no fixed length" in message
    assert "days" in message


def test_p1m_is_month_but_pt1m_is_minute() -> None:
    assert parse_interval("PT1M") == timedelta(minutes=1)
    with pytest.raises(InvalidInput, match="no fixed length"):
        parse_interval("P1M")


@pytest.mark.parametrize("bad", ["0 hours", "0s", "-6 hours", "PT0S", "00:00:00", "-01:00:00", "0.0000001 s"])
def test_parse_interval_rejects_non_positive(bad: str) -> None:
    with pytest.raises(InvalidInput, match="must be positive") as excinfo:
        parse_interval(bad)
    assert "6 hours" in str(excinfo.value)  # suggests a fix


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(hours=-1)])
def test_parse_interval_rejects_non_positive_timedelta(bad: timedelta) -> None:
    with pytest.raises(InvalidInput, match="must be positive"):
        parse_interval(bad)


@pytest.mark.parametrize(
    "bad", ["", "banana", "six hours", "6 hours banana", "6 hours 7", "P", "PT", "P1DT", "PT6X", "1:2", "hours 6"]
)
def test_parse_interval_garbage_lists_accepted_forms(bad: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        parse_interval(bad)
    message = str(excinfo.value)
    assert "6 hours" in message
    assert "PT6H" in message


def test_parse_interval_unknown_unit_names_unit() -> None:
    with pytest.raises(InvalidInput, match="fortnights") as excinfo:
        parse_interval("2 fortnights")
    assert "hours" in str(excinfo.value)


def test_parse_interval_bare_number_asks_for_unit() -> None:
    with pytest.raises(InvalidInput, match="no unit") as excinfo:
        parse_interval("3600")
    assert "3600 seconds" in str(excinfo.value)


def test_parse_interval_bad_clock() -> None:
    with pytest.raises(InvalidInput, match="below 60"):
        parse_interval("00:90:00")


def test_parse_interval_too_large() -> None:
    with pytest.raises(InvalidInput, match="too large"):
        parse_interval("99999999999 weeks")


def test_parse_interval_rejects_non_string() -> None:
    with pytest.raises(InvalidInput, match="int"):
        parse_interval(6)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(hours=6), "6 hours"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=2), "2 days"),
        (timedelta(days=1, hours=6), "1 day 6 hours"),
        (timedelta(minutes=30), "30 minutes"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(seconds=1), "1 second"),
        (timedelta(seconds=90), "1 minute 30 seconds"),
        (timedelta(seconds=1.5), "1.5 seconds"),
        (timedelta(milliseconds=250), "0.25 seconds"),
        (timedelta(days=7), "7 days"),
        (timedelta(0), "0 seconds"),
        (timedelta(hours=-6), "-6 hours"),
    ],
)
def test_format_interval(td: timedelta, expected: str) -> None:
    assert format_interval(td) == expected


@pytest.mark.parametrize(
    "td",
    [
        timedelta(microseconds=1),
        timedelta(seconds=59, microseconds=999_999),
        timedelta(days=3, hours=23, minutes=59, seconds=1, microseconds=10),
        timedelta(days=400, seconds=7),
    ],
)
def test_format_interval_round_trips(td: timedelta) -> None:
    assert parse_interval(format_interval(td)) == td


def test_datetime_subclasses_become_plain_datetimes() -> None:
    class Fancy(datetime):
        pass

    got = parse_instant(Fancy(2024, 1, 1, 6, tzinfo=timezone.utc))
    assert type(got) is datetime and got == datetime(2024, 1, 1, 6, tzinfo=timezone.utc)
    assert (parse_instant(Fancy(2024, 1, 2, tzinfo=timezone.utc)) - got) // timedelta(hours=6) == 3
