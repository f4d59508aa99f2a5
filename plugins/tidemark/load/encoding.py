"""Turning a source's pieces into COPY payloads, checking every row on the way.

Pieces are encoded as they arrive into a spool per table (memory up to a
few MiB, then a temporary file), so a batch's memory does not grow with its
size, the source is read once even when the write is retried, and the
database (on the embedded engine: the one shared session) is held only for
the COPY itself. A bad row fails the batch here, before any transaction.

Two encodings, one per kind of data:

* rows (tuples, dicts, cursor rows) are transposed into columns and each
  column is checked (``row_checks``) and rendered with one C-level pass per
  column, into COPY's binary format through Arrow where every column allows
  it, else into COPY's text format (``copy_text``);
* Arrow data (Parquet, CSV files, pandas, pyarrow) is cast and checked with
  Arrow's kernels (``arrow_data``) and written by Arrow into
  ``COPY ... (FORMAT binary)`` where every column allows it
  (``copy_binary``), else by Arrow's CSV writer into ``COPY ... (FORMAT csv)``
  (``copy_csv``): no Python loop per value. Columns CSV cannot carry
  faithfully (bytea, intervals, arrays) send that piece down the row path.

PostgreSQL stays the judge of values it parses (a varchar too long, a
numeric out of range, malformed JSON): when the server refuses one, the
loader names the dataset, table and window, and maps the COPY line back to
the row's place in the source (its file and line where the source knows it,
through the spool's record of its pieces); the value is quoted cut short.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import islice
from typing import IO, Any

from tidemark.errors import BadRow, InvalidInput
from tidemark.load import arrow_data, copy_binary, copy_csv
from tidemark.load.copy_text import copy_text
from tidemark.load.row_checks import check_columns
from tidemark.load.sorted_spool import SortedSpool
from tidemark.load.spool import TablePayloads
from tidemark.load.table_window import TableWindow
from tidemark.model.dataset import Hypertable, RowBatch
from tidemark.model.origin import Origin, shown_names
from tidemark.timescale.columnstore import ChunkOrder

log = logging.getLogger(__name__)

ROWS_PER_CHUNK = 20_000
_warned_extra: set[tuple[str, str, tuple[str, ...]]] = set()


class TableEncoder:
    """Encodes every piece of one batch window for one table into its payloads."""

    def __init__(self, dataset: str, table: Hypertable, start: datetime, end: datetime, *, binary: bool = True,
                 order: ChunkOrder | None = None) -> None:
        """``binary=False`` keeps to COPY text and CSV, what ``psql \\copy`` sends (the benchmarks' bare COPY).

        ``order``: frame the binary rows sorted in this chunk order (a direct COPY into ordered chunks).
        """
        self.binary = binary
        self.window = TableWindow(dataset, table, start, end)
        self.out = TablePayloads(table)
        self.sorter = SortedSpool(order, self.window.kinds) if order is not None and binary else None
        self._rows_as_binary: bool | None = None  # decided at the first rows (pyarrow is imported only then)

    # -- source columns against table columns ---------------------------

    def _extra(self, present: Iterable[str], origin: Origin | str) -> None:
        win = self.window
        extra = tuple(sorted(set(present) - set(win.names)))
        key = (win.dataset, win.table.qualified, extra)
        if extra and key not in _warned_extra:
            _warned_extra.add(key)
            log.info("%s: source columns %s are not table columns; ignored%s", win.where(), shown_names(extra),
                     f" ({origin})" if str(origin) else "")

    def _missing(self, present: Iterable[str], origin: Origin | str, n: int | None = None) -> None:
        names = self.window.names
        have = set(present)
        missing = [c for c in names if c not in have]
        if missing:
            raise self.window.bad(f"the source has no column {missing[0]!r} (table columns {shown_names(names)}; "
                                  f"source columns {shown_names(sorted(have))})", origin, n)

    # -- entry point ----------------------------------------------------

    def add(self, data: Any, origin: Origin | str = "") -> None:
        """Encode one piece: Arrow/pandas data, a RowBatch, or an iterable of rows."""
        self.window.piece_start = self.window.row
        if arrow_data.is_columnar(data):
            for batch in arrow_data.record_batches(data):
                self._add_arrow(batch, origin)
        elif isinstance(data, RowBatch):
            self._missing(data.columns, origin or data.origin)
            self._extra(data.columns, origin or data.origin)
            positions = [data.columns.index(n) for n in self.window.names]
            rows = data.rows
            for i in range(0, len(rows), ROWS_PER_CHUNK):
                chunk = rows[i:i + ROWS_PER_CHUNK]
                columns = list(zip(*chunk))  # a cursor's rows all have its width: transpose, then pick by name
                self._add_columns([columns[p] for p in positions], len(chunk), origin or data.origin)
        else:
            it = iter(data)
            while True:
                chunk = list(islice(it, ROWS_PER_CHUNK))
                if not chunk:
                    break
                if isinstance(chunk[0], dict):
                    self._add_dicts(chunk, origin)
                else:
                    self._add_tuples(chunk, origin)

    def finish(self) -> TablePayloads:
        if self.sorter is not None:
            self.out.sorted = self.sorter.finish(self.out)
        return self.out

    def _append(self, fmt: str, write: Callable[[IO[bytes]], object], rows: int, origin: Origin | str) -> None:
        """Spool encoded rows; the window's row count moves with them, so later refusals number rows across pieces.

        The spool remembers where its rows came from, so a value the server refuses is named by its place too.
        """
        win = self.window
        self.out.spool(fmt).append(write, rows, origin, win.row - win.piece_start, win.row)
        win.row += rows

    def _append_binary(self, batch: Any, rows: int, origin: Origin | str) -> None:
        """A checked Arrow piece as binary COPY: held for sorting when asked, else framed now.

        Sorted rows lose their source order, so a value the server refuses there is named by the table
        and window only (the sort is for whole chunks Tidemark checked already).
        """
        if self.sorter is not None and self.sorter.take(batch):
            self.window.row += rows
            return
        kinds = self.window.kinds
        self._append("binary", lambda f: copy_binary.write_binary(batch, kinds, f), rows, origin)

    # -- the row path ---------------------------------------------------

    def _add_dicts(self, chunk: list[Any], origin: Origin | str) -> None:
        win = self.window
        if not all(isinstance(r, dict) for r in chunk):
            n = next(i for i, r in enumerate(chunk) if not isinstance(r, dict))
            raise win.bad(f"is a {type(chunk[n]).__name__}, the rows before it dicts", origin, n)
        self._extra(chunk[0].keys(), origin)
        tuples = []
        names = win.names
        try:
            for r in chunk:
                tuples.append(tuple([r[n] for n in names]))
        except KeyError:
            bad = len(tuples)
            self._missing(chunk[bad].keys(), origin, bad)
        self._add_tuples(tuples, origin)

    def _add_tuples(self, rows: list[Any], origin: Origin | str) -> None:
        win = self.window
        width = len(win.names)
        if set(map(len, rows)) != {width}:
            n = next(i for i, r in enumerate(rows) if len(r) != width)
            time = rows[n][win.time_index] if len(rows[n]) > win.time_index else None
            raise win.bad(f"has {len(rows[n])} values, expected {width} {shown_names(win.names)}", origin, n, time)
        self._add_columns(list(zip(*rows)), len(rows), origin)

    def _add_columns(self, columns: Sequence[Sequence[Any]], rows: int, origin: Origin | str) -> None:
        """Check and encode one chunk given column by column, in the table's column order.

        Binary COPY through Arrow where every column allows it; the COPY text
        format otherwise, and for a chunk holding a value beyond its Arrow type
        (an int too big for the column): the server then names the value.
        """
        kinds = self.window.kinds
        checked = check_columns(self.window, columns, origin)
        if self._rows_as_binary is None:
            self._rows_as_binary = (self.binary and all(not k.array and k.base in arrow_data.ROWS_AS_BINARY for k in kinds)
                                    and arrow_data.available())
        if self._rows_as_binary:
            batch = arrow_data.from_rows([values for values, _ in checked], kinds, self.window.names)
            if batch is not None:
                self._append_binary(batch, rows, origin)
                return
        payload = copy_text(kinds, checked)
        self._append("text", lambda f: f.write(payload), rows, origin)

    # -- the Arrow path -------------------------------------------------

    def _add_arrow(self, batch: Any, origin: Origin | str) -> None:
        if batch.num_rows == 0:
            return
        win = self.window
        self._missing(batch.schema.names, origin)
        self._extra(batch.schema.names, origin)
        prepared = arrow_data.prepare(win, batch, origin)
        fmt = None if prepared is None else copy_binary.copy_format(prepared, win.kinds, binary=self.binary)
        if prepared is None or fmt is None:  # a column neither binary COPY nor CSV carries: the row path
            rows = batch.select(list(win.names)).to_pylist()
            if rows:
                self._add_dicts(rows, origin)
            return
        if fmt == "binary":
            self._append_binary(prepared, prepared.num_rows, origin)
        else:
            self._append("csv", lambda f: copy_csv.write_csv(prepared, f), prepared.num_rows, origin)


def encode_window(
    dataset: str, tables: Sequence[Hypertable], pieces: Iterable[tuple[Any, ...]], start: datetime, end: datetime,
    orders: Mapping[str, ChunkOrder] | None = None,
) -> dict[str, TablePayloads]:
    """Encode a source's pieces for the given tables; a piece for any other table is an error.

    A refusal raised by the source itself (a file outside the allowed folders, a line that is not CSV) is
    named by the dataset and window too. ``orders``: tables whose rows are framed sorted, in that chunk
    order (``tidemark.timescale.columnstore``).
    """
    orders = orders or {}
    encoders = {t.name: TableEncoder(dataset, t, start, end, order=orders.get(t.name)) for t in tables}
    it = iter(pieces)
    try:
        while True:
            try:
                piece = next(it)
            except StopIteration:
                break
            except (BadRow, InvalidInput) as exc:
                kind = BadRow if isinstance(exc, BadRow) else InvalidInput
                raise kind(f"dataset {dataset!r}, window [{start.isoformat()}, {end.isoformat()}): {exc}") from None
            name, data, *where = piece
            enc = encoders.get(name)
            if enc is None:
                raise BadRow(f"dataset {dataset!r}: the source yielded data for {name!r}, which is not one of the "
                             f"tables it feeds {sorted(encoders)}")
            origin = where[0] if where else ""
            enc.add(data, origin if isinstance(origin, Origin) else str(origin))
    except BaseException:
        for e in encoders.values():
            e.out.close()
        raise
    return {name: e.finish() for name, e in encoders.items()}
