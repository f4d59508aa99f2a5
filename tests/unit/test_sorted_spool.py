"""Sorting a window's Arrow rows into a chunk's order (segmentby, then orderby with its directions and nulls)."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa

from tidemark.load.sorted_spool import SortedSpool, sort_indices
from tidemark.load.spool import TablePayloads
from tidemark.model.column_types import parse_type
from tidemark.model.dataset import Column, Hypertable
from tidemark.timescale.columnstore import ChunkOrder, SortKey
from tidemark.timescale.version import parse_version

DATA = pa.record_batch({
    "seg": ["b", "a", "b", "a", None], "t": [3, 1, None, 2, 5], "f": [0.5, 1.5, 2.5, 3.5, 4.5],
    "ts": pa.array([datetime(2024, 1, 1, tzinfo=timezone.utc)] * 5, pa.timestamp("us", tz="UTC"))})


def order(*keys: SortKey, segmentby: tuple[str, ...] = ("seg",)) -> ChunkOrder:
    return ChunkOrder(segmentby, keys)


def rows(o: ChunkOrder, data: pa.RecordBatch = DATA) -> list[tuple[object, object]]:
    idx = sort_indices(data, o)
    assert idx is not None
    taken = data.take(idx)
    return list(zip(taken.column("seg").to_pylist(), taken.column("t").to_pylist()))


def test_segments_together_then_orderby_with_its_direction_and_nulls() -> None:
    assert rows(order(SortKey("t", descending=True, nulls_first=True))) == [
        ("a", 2), ("a", 1), ("b", None), ("b", 3), (None, 5)]
    assert rows(order(SortKey("t", descending=False, nulls_first=False))) == [
        ("a", 1), ("a", 2), ("b", 3), ("b", None), (None, 5)]
    assert rows(order(SortKey("t", descending=False, nulls_first=True), segmentby=())) == [
        ("b", None), ("a", 1), ("a", 2), ("b", 3), (None, 5)]


def test_a_nan_in_a_float_orderby_column_refuses_to_sort() -> None:
    assert sort_indices(DATA, order(SortKey("f", False, False))) is not None
    nan = DATA.set_column(2, "f", pa.array([0.5, float("nan"), 1.0, 2.0, 3.0]))
    assert sort_indices(nan, order(SortKey("f", False, False))) is None


def table() -> Hypertable:
    return Hypertable("x", "ts", (Column("seg", "text", True), Column("t", "bigint", True),
                                  Column("f", "double precision"), Column("ts", "timestamptz")))


def kinds() -> list[object]:
    return [parse_type(c.type) for c in table().cols]


def test_finish_sorts_only_when_it_holds_every_row_within_its_limit() -> None:
    o = order(SortKey("t", True, True))
    spool = SortedSpool(o, kinds())
    assert spool.take(DATA.slice(0, 2)) and spool.take(DATA.slice(2))
    out = TablePayloads(table())
    assert spool.finish(out) and out.rows == 5 and list(out.parts) == ["binary"]

    small = SortedSpool(o, kinds(), limit=DATA.slice(0, 2).nbytes)
    assert small.take(DATA.slice(0, 2)) and not small.take(DATA.slice(2)) and not small.take(DATA.slice(4))
    out = TablePayloads(table())
    assert not small.finish(out) and out.rows == 2  # framed as they came; the caller framed the rest

    mixed = SortedSpool(o, kinds())
    assert mixed.take(DATA)
    out = TablePayloads(table())
    out.spool("text").append(lambda f: f.write(b"x\t1\t1\n"), 1)  # a piece that went as COPY text
    assert not mixed.finish(out) and out.rows == 6


def test_parse_version() -> None:
    assert parse_version("2.23.0-dev") == (2, 23, 0)
    assert parse_version("2.29") == (2, 29, 0)
    assert parse_version("0") == (0, 0, 0)
