"""Rows from the user's own code: ``function(start, end)`` for each batch window.

The function returns any data the source contract accepts (rows as dicts
or tuples, a pyarrow Table or RecordBatches, a pandas DataFrame, or an
iterable of those pieces, which keeps memory bounded). As a dataset-level
source it may return a mapping of table name to such data, so one fetch
feeds several tables and the window is read once per batch, not once per
table. Optional ``tip()`` and ``count(start, end)`` functions give live
ingestion its tip and verification the source's own counts.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tidemark.load.arrow_data import is_columnar
from tidemark.errors import InvalidInput

if TYPE_CHECKING:
    from tidemark.model.dataset import Hypertable


def load_callable(path: str | Callable[..., Any], what: str = "callable") -> Callable[..., Any]:
    """``package.module:function`` (or a callable already) -> the callable."""
    if callable(path):
        return path
    if not isinstance(path, str) or path.count(":") != 1:
        raise InvalidInput(f"{what} must be 'package.module:function', got {path!r}")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure of user code is the user's to fix
        raise InvalidInput(f"{what} {path!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise InvalidInput(f"{what} {path!r}: module {module_name!r} has no {attr!r}")
    if not callable(target):
        raise InvalidInput(f"{what} {path!r} is not callable")
    return target  # type: ignore[no-any-return]


def _pieces(name: str, data: Any) -> Iterator[tuple[str, Any]]:
    if data is None:
        return
    if is_columnar(data):
        yield name, data
        return
    if type(data).__name__ == "RecordBatchReader":
        for batch in data:
            yield name, batch
        return
    it = iter(data)
    first = next(it, None)
    if first is None:
        return
    if is_columnar(first):
        yield name, first
        for piece in it:
            yield name, piece
        return
    yield name, itertools.chain([first], it)


class PythonSource:
    def __init__(
        self,
        callable: str | Callable[..., Any],  # noqa: A002 - the YAML key's name
        *,
        tip: str | Callable[..., Any] | None = None,
        count: str | Callable[..., Any] | None = None,
    ) -> None:
        self.path = callable if isinstance(callable, str) else getattr(callable, "__qualname__", repr(callable))
        self.function = load_callable(callable)
        self.tip_function = load_callable(tip, "tip") if tip is not None else getattr(self.function, "tip", None)
        self.count_function = load_callable(count, "count") if count is not None else None

    def read(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> Iterator[tuple[str, Any, str]]:
        origin = f"python source {self.path}"
        result = self.function(start, end)
        if isinstance(result, Mapping):
            for name, data in result.items():
                for piece in _pieces(str(name), data):
                    yield (*piece, origin)
            return
        if len(tables) != 1:
            raise InvalidInput(
                f"python source {self.path} feeds tables {[t.name for t in tables]}: it must return a mapping of "
                "table name to data"
            )
        for piece in _pieces(tables[0].name, result):
            yield (*piece, origin)

    def expected_counts(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> dict[str, int] | None:
        if self.count_function is None:
            return None
        counted = self.count_function(start, end)
        if isinstance(counted, Mapping):
            return {t.name: int(counted.get(t.name, 0)) for t in tables}
        if len(tables) != 1:
            raise InvalidInput(f"count function of python source {self.path} must return a mapping of table to count")
        return {tables[0].name: int(counted)}

    def tip(self, tables: Sequence[Hypertable]) -> datetime | None:
        if self.tip_function is None:
            return None
        value = self.tip_function()
        return value if isinstance(value, datetime) or value is None else None

    def describe(self) -> str:
        return f"python source {self.path}"

