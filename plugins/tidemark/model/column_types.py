"""The column types a dataset may declare, parsed into a closed grammar.

A type reaches the database as SQL text, so it is never passed through as
the user wrote it: it is parsed into a base type from a fixed list plus
integer modifiers and an array marker, and rendered back from those parts
only. Aliases (``int4``, ``float8``, ``character varying``) and the spellings
PostgreSQL's ``format_type`` prints for existing tables both parse, so a
hypertable's columns can be read back from the catalogue and compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tidemark.errors import InvalidInput

# Canonical base name -> how many integer modifiers it takes (min, max).
_BASES: dict[str, tuple[int, int]] = {
    "smallint": (0, 0),
    "integer": (0, 0),
    "bigint": (0, 0),
    "real": (0, 0),
    "double precision": (0, 0),
    "numeric": (0, 2),
    "text": (0, 0),
    "character varying": (0, 1),
    "boolean": (0, 0),
    "date": (0, 0),
    "timestamp without time zone": (0, 1),
    "timestamp with time zone": (0, 1),
    "interval": (0, 0),
    "uuid": (0, 0),
    "json": (0, 0),
    "jsonb": (0, 0),
    "bytea": (0, 0),
}

_ALIASES: dict[str, str] = {
    "int2": "smallint",
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "float": "double precision",
    "double": "double precision",
    "decimal": "numeric",
    "varchar": "character varying",
    "string": "text",
    "bool": "boolean",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
}

# name [(m[, m])] [with[out] time zone] [[]] - the time-zone clause may follow the modifiers, as in format_type.
_TYPE = re.compile(
    r"^\s*(?P<name>[a-z][a-z0-9 ]*?)\s*(?:\(\s*(?P<mods>\d+(?:\s*,\s*\d+)?)\s*\))?"
    r"\s*(?P<tz>with(?:out)?\s+time\s+zone)?\s*(?P<array>\[\s*\]|\s+array)?\s*$"
)

SUPPORTED = (
    "smallint, integer, bigint, real, double precision, numeric(p,s), text, varchar(n), boolean, date, "
    "timestamp, timestamptz, interval, uuid, json, jsonb, bytea, and one-dimensional arrays of these (e.g. text[])"
)


@dataclass(frozen=True)
class ColumnType:
    """A parsed type: ``base`` is canonical, ``sql`` is safe to splice into DDL."""

    base: str
    modifiers: tuple[int, ...] = ()
    array: bool = False

    @property
    def sql(self) -> str:
        mods = f"({','.join(map(str, self.modifiers))})" if self.modifiers else ""
        if self.base.startswith("timestamp ") and mods:
            head, _, zone = self.base.partition(" ")
            text = f"{head}{mods} {zone}"
        else:
            text = self.base + mods
        return text + ("[]" if self.array else "")

    @property
    def short(self) -> str:
        """The name users write (timestamptz, varchar(20)), for messages."""
        names = {"timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp",
                 "character varying": "varchar"}
        mods = f"({','.join(map(str, self.modifiers))})" if self.modifiers else ""
        return names.get(self.base, self.base) + mods + ("[]" if self.array else "")

    @property
    def is_timestamptz(self) -> bool:
        return self.base == "timestamp with time zone" and not self.array


def parse_type(text: str) -> ColumnType:
    """Parse a declared or catalogue type; InvalidInput lists what is supported."""
    if not isinstance(text, str):
        raise InvalidInput(f"column type {text!r} must be a string; supported: {SUPPORTED}")
    m = _TYPE.match(text.lower())
    if not m:
        raise InvalidInput(f"unsupported column type {text!r}; supported: {SUPPORTED}")
    name = re.sub(r"\s+", " ", m.group("name"))
    if m.group("tz"):
        if name not in ("timestamp", "time"):
            raise InvalidInput(f"unsupported column type {text!r}; supported: {SUPPORTED}")
        name = "timestamp with time zone" if m.group("tz").startswith("with ") else "timestamp without time zone"
    name = _ALIASES.get(name, name)
    if name not in _BASES:
        raise InvalidInput(f"unsupported column type {text!r}; supported: {SUPPORTED}")
    mods = tuple(int(x) for x in re.split(r"\s*,\s*", m.group("mods"))) if m.group("mods") else ()
    low, high = _BASES[name]
    if not low <= len(mods) <= high:
        raise InvalidInput(f"column type {text!r}: {name} takes at most {high} modifier(s)")
    if name == "numeric" and mods and not (1 <= mods[0] <= 1000 and (len(mods) == 1 or 0 <= mods[1] <= mods[0])):
        raise InvalidInput(f"column type {text!r}: numeric(p,s) needs 1 <= p <= 1000 and 0 <= s <= p")
    if name == "character varying" and mods and not 1 <= mods[0] <= 10485760:
        raise InvalidInput(f"column type {text!r}: varchar(n) needs 1 <= n <= 10485760")
    if name.startswith("timestamp") and mods and mods[0] > 6:
        raise InvalidInput(f"column type {text!r}: timestamp precision is at most 6")
    return ColumnType(name, mods, bool(m.group("array")))
