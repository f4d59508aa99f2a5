"""Checked Python values rendered in COPY's text format, a column at a time.

Each column goes through one C-level pass (``map``, ``join``, ``translate``)
rather than a Python loop per value, and escaping is skipped for a column
none of whose values needs it: most text columns (names, codes) never do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from tidemark.model.column_types import ColumnType

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def _escape_all(values: list[str]) -> list[str]:
    joined = "".join(values)
    if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
        return [v.translate(_ESCAPES) for v in values]
    return values


def _interval_text(td: timedelta) -> str:
    return f"{td.days} days {td.seconds}.{td.microseconds:06d} seconds"


def _json_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)


def _bytea_text(v: Any) -> str:
    return "\\x" + bytes(v).hex()


def _array_element(kind: ColumnType, v: Any) -> str:
    if v is None:
        return "NULL"
    text = TEXT[kind.base](v)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# base type -> value -> text before COPY escaping; every type tidemark.load.row_checks accepts has one.
TEXT: dict[str, Callable[[Any], str]] = {
    "smallint": str,
    "integer": str,
    "bigint": str,
    "real": str,
    "double precision": str,
    "numeric": str,
    "text": str,
    "character varying": str,
    "boolean": lambda v: "t" if v else "f",
    "date": date.isoformat,
    "timestamp without time zone": datetime.isoformat,
    "timestamp with time zone": datetime.isoformat,
    "interval": _interval_text,
    "uuid": str,
    "json": _json_text,
    "jsonb": _json_text,
    "bytea": _bytea_text,
}


def render(kind: ColumnType, values: list[Any], nulls: bool) -> list[str]:
    """A checked column's values in COPY's text format."""
    if kind.array:
        convert: Callable[[Any], str] = lambda v: "{" + ",".join(_array_element(kind, e) for e in v) + "}"  # noqa: E731
    else:
        convert = TEXT[kind.base]
    if kind.base.startswith("timestamp") and not kind.array:
        # Rows share timestamps (a ledger's transactions, a minute's readings): render each once.
        unique = dict.fromkeys(values)
        unique.pop(None, None)
        rendered = dict(zip(unique, map(datetime.isoformat, unique)))
        if nulls:
            rendered[None] = _NULL
        return list(map(rendered.__getitem__, values))
    if nulls:
        texts = [_NULL if v is None else convert(v) for v in values]
        strings = [t for t in texts if t is not _NULL]
        if strings and _escape_all(strings) is not strings:
            return [t if t is _NULL else t.translate(_ESCAPES) for t in texts]
        return texts
    return _escape_all(list(map(convert, values)))


def copy_text(kinds: Sequence[ColumnType], checked: Sequence[tuple[list[Any], bool]]) -> bytes:
    """A chunk's checked columns (values, holds NULLs) as COPY text lines, one per row."""
    texts = [render(kind, values, nulls) for kind, (values, nulls) in zip(kinds, checked)]
    return ("\n".join(map("\t".join, zip(*texts))) + "\n").encode()
