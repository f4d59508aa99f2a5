"""The source contract: what Tidemark asks of anything that produces a dataset's rows.

A source is handed a batch window ``[start, end)`` and the hypertables it
feeds, and yields ``(table name, data)`` pieces until the window is
exhausted (or ``(table name, data, origin)``, where ``origin`` says where
the data came from, e.g. a file, for error messages). Everything else (checking, encoding, COPY, retries, the ledger,
verification) is Tidemark's.

The promises a source makes:

* **Only its window.** Every row it yields has ``start <= time < end`` in the
  table's time column; a row outside is refused (the batch fails, nothing is
  written). A window must yield the same rows every time it is read, so a
  replay after a crash converges to the same data.
* **Pieces, not everything at once.** Memory stays bounded when a source
  yields many moderate pieces (a few thousand to a few hundred thousand rows
  each) instead of one huge one; Tidemark spools each piece to a temporary
  file as it arrives.
* **Data Tidemark understands.** A piece is one of
  - a ``pyarrow.RecordBatch`` or ``pyarrow.Table`` (the columnar fast path:
    no Python loop per value), or a ``pandas.DataFrame`` (converted to Arrow;
    NaN in a float column becomes NULL);
  - a :class:`RowBatch` (rows as tuples with column names, what a SQL cursor
    gives);
  - any other iterable of rows: ``dict`` rows are matched to columns by name,
    ``tuple`` rows by position in the table's declared column order.
  Columns are matched by name: a table column the data lacks is an error
  before any write; extra columns are ignored (logged once).
* **Secrets stay in Airflow connections.** A source refers to a ``conn_id``
  and never puts a DSN, password or credentialed URL in a message.

Optional abilities, discovered with ``getattr``:

* ``expected_counts(tables, start, end) -> Mapping[str, int] | None``: the
  exact rows per table in a window, if the source can count cheaply; the
  backfill's verification then checks the tables against the source as well
  as against the ledger.
* ``tip(tables) -> datetime | None``: how far the data reaches, for live
  ingestion and its hand-over to catchup.
* ``describe() -> str``: a one-line, secret-free description for logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tidemark.datasets import Hypertable

Piece = tuple[Any, ...]  # (table name, data) or (table name, data, origin)


@dataclass(frozen=True)
class RowBatch:
    """Rows as tuples plus the names of their positions (a database cursor's shape)."""

    columns: tuple[str, ...]
    rows: Sequence[tuple[Any, ...]]
    origin: str = ""


@runtime_checkable
class Source(Protocol):
    def read(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> Iterable[Piece]: ...


def expected_counts(
    source: Source, tables: Sequence[Hypertable], start: datetime, end: datetime
) -> Mapping[str, int] | None:
    counter = getattr(source, "expected_counts", None)
    return counter(tables, start, end) if counter is not None else None


def tip(source: Source, tables: Sequence[Hypertable]) -> datetime | None:
    finder = getattr(source, "tip", None)
    return finder(tables) if finder is not None else None


def describe(source: Source) -> str:
    d = getattr(source, "describe", None)
    return d() if d is not None else type(source).__name__


def only(tables: Sequence[Hypertable]) -> Hypertable:
    """The single table a table-level source feeds (it may be given only one)."""
    if len(tables) != 1:
        from tidemark.errors import InvalidInput

        raise InvalidInput(f"this source feeds exactly one table, not {[t.name for t in tables]}")
    return tables[0]


def each_table(tables: Sequence[Hypertable], pieces: Iterator[Any]) -> Iterator[Piece]:
    """Tag every piece of a one-table source with that table's name."""
    name = only(tables).name
    for piece in pieces:
        yield name, piece
