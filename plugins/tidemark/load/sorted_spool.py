"""One table's binary COPY rows for a window, held as Arrow data and framed sorted: ordered chunks from direct COPY.

A direct COPY flagged client-sorted (``tidemark.timescale.columnstore``)
must carry its rows grouped by the table's segmentby columns and, within a
group, in its orderby order; TimescaleDB trusts that order without checking
it. The pieces of the window are held as the Arrow record batches they are
framed from, then sorted with Arrow's kernels (``sort_indices`` over the key
columns, ``take`` a slice at a time) and framed into the table's binary
payload.

Memory: a table's rows for one batch window, in Arrow form, plus 8 bytes a
row of sort indices and one framed slice; a window is whole chunks (only
then is sorting asked for), and a chunk is sized to fit comfortably in
memory (TimescaleDB's guidance). ``SORT_MAX_BYTES`` bounds it anyway: past
it the rows are framed as they came and the chunk is left unordered for
recompression, as without sorting.
"""

from __future__ import annotations

from typing import Any

from tidemark.load import copy_binary
from tidemark.load.spool import TablePayloads
from tidemark.timescale.columnstore import ChunkOrder

SORT_MAX_BYTES = 256 * 1024 * 1024
_FRAME_ROWS = 4 * copy_binary.BINARY_SLICE_ROWS  # rows taken (in sorted order) and framed at a time


class SortedSpool:
    """Holds one table's binary pieces for a window; ``finish`` frames them, sorted when it can."""

    def __init__(self, order: ChunkOrder, kinds: Any, limit: int = SORT_MAX_BYTES) -> None:
        self.order = order
        self.kinds = kinds
        self.limit = limit
        self.batches: list[Any] = []
        self.nbytes = 0
        self.open = True  # False once the window outgrew the limit: later pieces are framed as they come

    def take(self, batch: Any) -> bool:
        """Hold the piece for sorting; False (not held: frame it now) once the window's rows outgrow the limit."""
        if not self.open or self.nbytes + batch.nbytes > self.limit:
            self.open = False
            return False
        self.batches.append(batch)
        self.nbytes += batch.nbytes
        return True

    def finish(self, out: TablePayloads) -> bool:
        """Frame the held rows into ``out``'s binary payload; True if that payload is all the table's rows, sorted."""
        import pyarrow as pa

        batches, self.batches = self.batches, []
        if not batches:
            return False
        data = pa.concat_batches(batches)
        del batches
        whole = self.open and not out.parts  # no piece went another way (text, CSV, framed past the limit)
        indices = sort_indices(data, self.order) if whole else None
        kinds = self.kinds

        def frame(sink: Any) -> None:
            if indices is None:
                copy_binary.write_binary(data, kinds, sink)
                return
            for start in range(0, data.num_rows, _FRAME_ROWS):
                copy_binary.write_binary(data.take(indices.slice(start, _FRAME_ROWS)), kinds, sink)

        out.spool("binary").append(frame, data.num_rows)
        return indices is not None


def sort_indices(data: Any, order: ChunkOrder) -> Any | None:
    """Row positions in the chunk's order: segmentby values together, then orderby; None if Arrow cannot match it.

    Nulls go where the orderby key puts them (an is-null key before the
    value); a float orderby column holding NaN is refused, as Arrow places
    NaN last in either direction and PostgreSQL above every number.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    keys: dict[str, Any] = {}
    sort_keys: list[tuple[str, str]] = []

    def key(values: Any, descending: bool) -> None:
        name = f"k{len(keys)}"
        keys[name] = values
        sort_keys.append((name, "descending" if descending else "ascending"))

    for name in order.segmentby:
        key(data.column(name), False)
    for k in order.orderby:
        values = data.column(k.column)
        if pa.types.is_floating(values.type) and pc.any(pc.is_nan(values)).as_py():
            return None
        if values.null_count:
            key(pc.is_null(values), k.nulls_first)  # true sorts after false: descending puts nulls first
        key(values, k.descending)
    return pc.sort_indices(pa.table(keys), sort_keys=sort_keys)
