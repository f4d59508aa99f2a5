"""Lenient parsing of user-typed instants and intervals into exact UTC values.

Backfill parameters arrive as free text from the Airflow trigger form, so the
parser accepts the spellings people actually type (``6h``, ``1 day 6 hours``,
``PT6H``, ``06:00:00``) but normalises everything to timezone-aware UTC
datetimes and exact ``timedelta`` values, so that planning never depends on the
worker's local timezone or on float rounding.  Calendar units (months, years)
are refused because a batch interval must have one fixed length.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from tidemark.errors import InvalidInput

__all__ = ["INTERVAL_PATTERN", "parse_instant", "parse_interval", "format_interval"]

_UTC = timezone.utc

_INSTANT_EXAMPLE = "use ISO 8601, e.g. '2024-01-01', '2024-01-01T06:00' or '2024-01-01T06:00:00Z'"

_INTERVAL_FORMS = (
    "accepted forms: '6 hours', '1 day 6 hours', '30 minutes', '90 seconds', '1 week', "
    "'1.5 hours', abbreviations like '6h', '30min', '90s', '2d', '1w', "
    "a clock '06:00:00', or ISO 8601 'PT6H', 'P1D', 'P1DT12H'"
)

_US_PER_UNIT: dict[str, int] = {}
for _names, _us in (
    (("us", "usec", "usecs", "microsecond", "microseconds"), 1),
    (("ms", "msec", "msecs", "millisecond", "milliseconds"), 1_000),
    (("s", "sec", "secs", "second", "seconds"), 1_000_000),
    (("m", "min", "mins", "minute", "minutes"), 60_000_000),
    (("h", "hr", "hrs", "hour", "hours"), 3_600_000_000),
    (("d", "day", "days"), 86_400_000_000),
    (("w", "wk", "wks", "week", "weeks"), 604_800_000_000),
):
    for _name in _names:
        _US_PER_UNIT[_name] = _us

_CALENDAR_UNITS = frozenset(
    {"mo", "mon", "mons", "month", "months", "mth", "mths", "y", "yr", "yrs", "year", "years"}
)

# The interval grammar, written once. The same pieces give the tokenizer below
# and INTERVAL_PATTERN, the trigger form's JSON-schema ``pattern`` (ECMA-262 and
# Python ``re`` alike: no inline flags, so case-insensitivity is spelled out
# as character classes, and ASCII digits only, as a browser's ``\d`` means).
_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_SEPARATOR = r"(?:\s|,|\band\b)+"
_CLOCK = r"([-+]?)([0-9]+):([0-9]{1,2}):([0-9]{1,2}(?:\.[0-9]+)?)"
_ISO_NUM = r"([0-9]+(?:[.,][0-9]+)?)"


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


def _unit_alternation(names: list[str], spell: Callable[[str], str]) -> str:
    # Longest first, and never followed by another letter: '5 hoursx' is an unknown unit, not '5 hours' + 'x'.
    return "(?:" + "|".join(spell(n) for n in sorted(names, key=len, reverse=True)) + ")(?![A-Za-z])"


def _uncaptured(rx: str) -> str:
    return re.sub(r"\((?!\?)", "(?:", rx)


def _grammar(spell: Callable[[str], str]) -> str:
    unit = _unit_alternation(list(_US_PER_UNIT), spell)
    sep = _SEPARATOR.replace("and", spell("and"))
    clock = _uncaptured(_CLOCK)
    term = f"{_NUMBER}\\s*{unit}"
    unit_text = f"(?:{sep})?{term}(?:(?:{sep})?{term})*(?:(?:{sep})?{clock}|{sep})?"
    num = _uncaptured(_ISO_NUM)
    p, t = spell("p"), spell("t")
    iso = (
        f"{p}(?=[0-9]|{t}[0-9])(?:{num}{spell('w')})?(?:{num}{spell('d')})?"
        f"(?:{t}(?=[0-9])(?:{num}{spell('h')})?(?:{num}{spell('m')})?(?:{num}{spell('s')})?)?"
    )
    return f"^\\s*(?:{unit_text}|{clock}|{iso})\\s*$"


INTERVAL_PATTERN = _grammar(_any_case)
"""Every interval ``parse_interval`` accepts the syntax of, as one regular expression.

The Airflow trigger forms validate with it (browser and ``jsonschema``), and
``parse_interval`` refuses anything it does not match, so the form and the
parser cannot disagree. What it cannot judge is left to the parser: a zero or
negative total, a clock with 60 minutes, an interval too large.
"""
_INTERVAL_RE = re.compile(INTERVAL_PATTERN)
_TOKEN_RE = re.compile(rf"({_NUMBER})\s*([a-z]+)")
_CLOCK_RE = re.compile(_CLOCK)
_BARE_NUMBER_RE = re.compile(_NUMBER)
_SEPARATOR_RE = re.compile(_SEPARATOR)
_ISO_RE = re.compile(
    rf"P(?:{_ISO_NUM}Y)?(?:{_ISO_NUM}M)?(?:{_ISO_NUM}W)?(?:{_ISO_NUM}D)?"
    rf"(?:T(?:{_ISO_NUM}H)?(?:{_ISO_NUM}M)?(?:{_ISO_NUM}S)?)?"
)
_EXTENDED_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_instant(value: str | datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive input is taken to be UTC.

    Naive values are read as UTC rather than local time because Airflow
    workers may run in any timezone and a backfill range must mean the same
    thing everywhere.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            value = value.replace(tzinfo=_UTC)
        try:
            utc = value.astimezone(_UTC)
        except OverflowError:  # 9999-12-31T23:00-02:00 is in year 10000 in UTC
            raise InvalidInput(f"timestamp {value.isoformat()} is out of range in UTC; {_INSTANT_EXAMPLE}") from None
        # A plain datetime even for subclasses (Airflow hands out pendulum
        # DateTimes, whose differences do not divide by a timedelta).
        return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=_UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=_UTC)
    if not isinstance(value, str):
        raise InvalidInput(
            f"timestamp {value!r} has type {type(value).__name__}; {_INSTANT_EXAMPLE}"
        )
    text = value.strip()
    if not text:
        raise InvalidInput(f"timestamp is empty; {_INSTANT_EXAMPLE}")
    text = text.upper()
    # fromisoformat accepts any character between date and time; only T and a
    # space are real separators, anything else is almost certainly a typo.
    if _EXTENDED_DATE_RE.match(text) and len(text) > 10 and text[10] not in "T ":
        raise InvalidInput(f"cannot parse timestamp {value!r}; {_INSTANT_EXAMPLE}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"cannot parse timestamp {value!r}; {_INSTANT_EXAMPLE}") from None
    return parse_instant(parsed)


def parse_interval(value: str | timedelta) -> timedelta:
    """Return ``value`` as a positive ``timedelta``.

    Decimal arithmetic is used so '0.1 seconds' is exactly 100 ms: batch
    boundaries are computed from this value and must not drift.
    """
    if isinstance(value, timedelta):
        return _require_positive(value, repr(format_interval(value)))
    if not isinstance(value, str):
        raise InvalidInput(
            f"interval {value!r} has type {type(value).__name__}; {_INTERVAL_FORMS}"
        )
    text = value.strip()
    if not text:
        raise InvalidInput(f"interval is empty; {_INTERVAL_FORMS}")
    if text[0] in "Pp":
        micros = _parse_iso_duration(value, text.upper())
    else:
        micros = _parse_unit_text(value, text.lower())
    if not _INTERVAL_RE.search(text):  # the form's grammar is the parser's: nothing it refuses gets through
        raise InvalidInput(f"cannot parse interval {value!r}; {_INTERVAL_FORMS}")
    try:
        result = timedelta(microseconds=int(micros.to_integral_value(ROUND_HALF_EVEN)))
    except OverflowError:
        raise InvalidInput(
            f"interval {value!r} is too large; use at most {timedelta.max.days} days"
        ) from None
    return _require_positive(result, repr(value))


def format_interval(td: timedelta) -> str:
    """Render ``td`` the way a person would type it, e.g. '1 day 6 hours'.

    The output is accepted by ``parse_interval`` and round-trips exactly, so it
    is safe to put in suggestions that users copy back into the form.
    """
    if td < timedelta(0):
        return "-" + format_interval(-td)
    if td == timedelta(0):
        return "0 seconds"
    hours, rest = divmod(td.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts: list[str] = []
    for amount, unit in ((td.days, "day"), (hours, "hour"), (minutes, "minute")):
        if amount:
            parts.append(f"{amount} {unit}" if amount == 1 else f"{amount} {unit}s")
    if td.microseconds:
        number = f"{seconds}.{td.microseconds:06d}".rstrip("0")
        parts.append(f"{number} seconds")
    elif seconds:
        parts.append(f"{seconds} second" if seconds == 1 else f"{seconds} seconds")
    return " ".join(parts)


def _require_positive(td: timedelta, shown: str) -> timedelta:
    if td <= timedelta(0):
        raise InvalidInput(f"interval {shown} must be positive; use e.g. '6 hours'")
    return td


def _parse_iso_duration(original: str, text: str) -> Decimal:
    match = _ISO_RE.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise InvalidInput(f"cannot parse ISO 8601 duration {original!r}; {_INTERVAL_FORMS}")
    years, months, weeks, days, hours, minutes, seconds = match.groups()
    if years is not None or months is not None:
        raise _calendar_unit_error(original)
    total = Decimal(0)
    for amount, unit in (
        (weeks, "w"),
        (days, "d"),
        (hours, "h"),
        (minutes, "m"),
        (seconds, "s"),
    ):
        if amount is not None:
            total += Decimal(amount.replace(",", ".")) * _US_PER_UNIT[unit]
    return total


def _parse_unit_text(original: str, text: str) -> Decimal:
    clock = _CLOCK_RE.fullmatch(text)
    if clock is not None:
        return _clock_micros(original, clock)
    if _BARE_NUMBER_RE.fullmatch(text):
        raise InvalidInput(
            f"interval {original!r} has no unit; write e.g. '{text} seconds' or '{text} hours'"
        )
    total = Decimal(0)
    pos = 0
    seen_any = False
    while pos < len(text):
        sep = _SEPARATOR_RE.match(text, pos)
        if sep is not None and sep.end() > pos:
            pos = sep.end()
            continue
        token = _TOKEN_RE.match(text, pos)
        if token is not None:
            number, unit = token.groups()
            if unit in _CALENDAR_UNITS:
                raise _calendar_unit_error(original)
            if unit not in _US_PER_UNIT:
                raise InvalidInput(
                    f"unknown unit {unit!r} in interval {original!r}; use seconds, minutes, "
                    f"hours, days or weeks (or s, min, h, d, w)"
                )
            total += _decimal(original, number) * _US_PER_UNIT[unit]
            pos = token.end()
            seen_any = True
            continue
        clock = _CLOCK_RE.match(text, pos)
        # A trailing clock is how PostgreSQL prints intervals ('1 day 06:00:00').
        if clock is not None and clock.end() == len(text) and seen_any:
            total += _clock_micros(original, clock)
            pos = clock.end()
            continue
        raise InvalidInput(f"cannot parse interval {original!r}; {_INTERVAL_FORMS}")
    if not seen_any:
        raise InvalidInput(f"cannot parse interval {original!r}; {_INTERVAL_FORMS}")
    return total


def _clock_micros(original: str, clock: re.Match[str]) -> Decimal:
    sign, hours, minutes, seconds = clock.groups()
    if int(minutes) >= 60 or Decimal(seconds) >= 60:
        raise InvalidInput(
            f"interval {original!r} is not a valid HH:MM:SS clock (minutes and seconds must "
            f"be below 60); use e.g. '01:30:00' or '90 minutes'"
        )
    total = (
        int(hours) * _US_PER_UNIT["h"]
        + int(minutes) * _US_PER_UNIT["m"]
        + Decimal(seconds) * _US_PER_UNIT["s"]
    )
    return -total if sign == "-" else total


def _decimal(original: str, number: str) -> Decimal:
    try:
        return Decimal(number)
    except InvalidOperation:
        raise InvalidInput(f"cannot parse interval {original!r}; {_INTERVAL_FORMS}") from None


def _calendar_unit_error(original: str) -> InvalidInput:
    return InvalidInput(
        f"interval {original!r} uses months or years, which have no fixed length "
        f"(28-31 and 365-366 days); use days instead, e.g. '30 days' or '365 days'"
    )
