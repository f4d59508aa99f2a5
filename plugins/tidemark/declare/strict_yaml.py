"""YAML as a declaration needs it: plain data, one document, every key once, nothing that expands.

PyYAML's safe loader takes the last of two ``source:`` keys without a word,
expands aliases (548 bytes of ``&a [*b, *b, ...]`` became a 2.5 GB error
message once printed) and recurses once per nesting level (50,000 ``[``
exhaust the interpreter's stack). A declaration needs none of that. So the
document is built here straight from the parser's events (libyaml's where
PyYAML has it), and the first anchor or alias, repeated or merge key,
collection tag, nesting deeper than :data:`MAX_DEPTH` or value beyond
:data:`MAX_VALUES` is refused where it is met, before anything is expanded:
a bad file costs the little that was read of it, and the refusal carries the
key path (``tables[0].source``) like every other declaration error.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    ScalarNode,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

__all__ = ["MAX_DEPTH", "MAX_VALUES", "Refusal", "cut", "load", "shown"]

# A declaration nests five levels (tables, a table, columns, a column, its keys); a source's options a few more.
MAX_DEPTH = 32
# A 1600-column table (PostgreSQL's limit) is about 11,200 values; past this, parsing alone would take seconds.
MAX_VALUES = 50_000
# Longest prefix of a user's value any message repeats: enough to recognise it, never enough to flood a log.
ECHO = 60

_STR = "tag:yaml.org,2002:str"
# Scalar tags built by calling the safe loader's constructor directly: construct_object's bookkeeping tripled their cost.
_PLAIN = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "timestamp", "binary")}
_MERGE = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = {"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def cut(text: str, limit: int = ECHO) -> str:
    """``text``, or its first ``limit`` characters and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def shown(value: object) -> str:
    """The value as a message quotes it (its repr), cut short; a string keeps its quotes and tells its length."""
    if isinstance(value, str) and len(value) > ECHO:
        return f"{value[:ECHO]!r}… ({len(value):,} characters)"
    return cut(repr(value))


class Refusal(Exception):
    """The document holds something a declaration may not: where (a key path) and why."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def load(text: str) -> Any:
    """The one document of ``text`` as plain data; Refusal, or yaml.YAMLError for what libyaml cannot parse."""
    loader = _Loader(text)
    try:
        return loader.document()
    finally:
        loader.dispose()


def _line(event: Any) -> int:
    return int(event.start_mark.line) + 1


class _Loader(_Base):  # type: ignore[misc]  # PyYAML is untyped
    """The parser and the scalar constructors of PyYAML's safe loader; composition and collections are its own."""

    _values = 0

    def document(self) -> Any:
        self.get_event()  # stream start
        if self.check_event(StreamEndEvent):
            return None
        self.get_event()  # document start
        value = self._value((), 0)
        self.get_event()  # document end
        if not self.check_event(StreamEndEvent):
            raise Refusal((), f"a declaration is one YAML document; another starts at line {_line(self.peek_event())}")
        return value

    def _value(self, loc: tuple[str | int, ...], depth: int) -> Any:
        event = self.get_event()
        self._values += 1
        if self._values > MAX_VALUES:
            raise Refusal((), f"holds more than {MAX_VALUES:,} values (the last at line {_line(event)}); "
                              "a declaration needs far fewer")
        if isinstance(event, AliasEvent):
            raise Refusal(loc, f"alias *{cut(str(event.anchor))} at line {_line(event)}: "
                               "declarations take no anchors or aliases; write the value out")
        if event.anchor is not None:
            raise Refusal(loc, f"anchor &{cut(str(event.anchor))} at line {_line(event)}: "
                               "declarations take no anchors or aliases; write the value out")
        if isinstance(event, ScalarEvent):
            return self._scalar(event, loc)
        if depth >= MAX_DEPTH:
            raise Refusal(loc, f"nested deeper than {MAX_DEPTH} levels (line {_line(event)})")
        if event.tag not in (None, "!") and event.tag not in _COLLECTION_TAGS:
            raise Refusal(loc, f"tag {cut(str(event.tag))} at line {_line(event)}: declarations take plain "
                               "mappings and lists")
        if isinstance(event, SequenceStartEvent):
            items: list[Any] = []
            while not self.check_event(SequenceEndEvent):
                items.append(self._value((*loc, len(items)), depth + 1))
            self.get_event()
            return items
        assert isinstance(event, MappingStartEvent), event
        return self._mapping(loc, depth)

    def _mapping(self, loc: tuple[str | int, ...], depth: int) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        while not self.check_event(MappingEndEvent):
            start = self.peek_event()
            if isinstance(start, (SequenceStartEvent, MappingStartEvent)):
                raise Refusal(loc, f"a key at line {_line(start)} is a list or mapping; keys are names")
            key = self._value(loc, depth + 1)  # a scalar, an alias or an anchor (both refused): never a collection
            at = (*loc, cut(str(key)))
            if key in lines:
                raise Refusal(at, f"is given twice (lines {lines[key]} and {_line(start)}); "
                                  "YAML would silently keep the last")
            lines[key] = _line(start)
            mapping[key] = self._value(at, depth + 1)
        self.get_event()
        return mapping

    def _scalar(self, event: Any, loc: tuple[str | int, ...]) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(ScalarNode, event.value, event.implicit)
        if tag == _STR:
            return event.value
        if tag == _MERGE:
            raise Refusal(loc, f"merge key << at line {_line(event)}: declarations take no merge keys")
        # The safe loader's own constructors: numbers, booleans, null, timestamps; an unknown tag is its error.
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        if tag in _PLAIN:
            return self.yaml_constructors[tag](self, node)
        return self.construct_object(node, deep=True)
