"""Where a source's rows came from, and how a refusal quotes what it found there.

A refusal names the place to fix (a file and its own line, a Parquet row
group and the row within it) and the value refused, cut short: never a whole
row, never more of a file than that value. A file read by mistake must not
reach the logs through an error message, and a long value drowns the message
that names it.

A source that knows such places yields ``(table, data, Origin(...))``; any
other origin is a plain string naming the source, and its rows are then
counted within the window and named by their time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

__all__ = ["NAMES_SHOWN", "Origin", "SHOWN", "shown", "shown_names"]

SHOWN = 40  # characters of a value a message quotes
NAMES_SHOWN = 12  # names of a list a message quotes


def shown(value: object) -> str:
    """The value as a message quotes it: its repr, cut to 40 characters and ``…``."""
    if isinstance(value, (str, bytes)) and len(value) > SHOWN:
        return f"{value[:SHOWN]!r}…"
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}…"


def shown_names(names: Iterable[object]) -> str:
    """Column names as a message lists them: each cut short, at most 12 of them."""
    items = list(names)
    text = ", ".join(shown(n) for n in items[:NAMES_SHOWN])
    if len(items) > NAMES_SHOWN:
        text += f", … ({len(items)} in all)"
    return f"[{text}]"


@dataclass(frozen=True)
class Origin:
    """Where a piece came from: ``where`` for messages (``file /data/x.csv``), and where each of its rows is.

    ``locate`` turns the index of a row in the piece into its place in the
    source, as a message names it (``line 7002``, ``row group 3, row 17``).
    It runs only when a row is refused, so it may be slow (read the file
    again to count its lines).
    """

    where: str
    locate: Callable[[int], str] | None = None

    def __str__(self) -> str:
        return self.where

    def place(self, index: int) -> str | None:
        """The row's place in the source, or None if it cannot be told."""
        if self.locate is None:
            return None
        try:
            return self.locate(index)
        except Exception as exc:  # noqa: BLE001 - a refusal is never lost for want of a line number
            log.warning("%s: cannot tell where row %d is: %s", self.where, index, type(exc).__name__)
            return None
