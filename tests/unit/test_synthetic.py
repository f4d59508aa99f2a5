from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tidemark.demo.pattern import PERIOD
from tidemark.demo.rows import COLUMNS
from tidemark.demo.stream import LedgerSource

UTC = timezone.utc
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
TABLES = ("ledgers", "transactions", "operations")


@pytest.fixture(scope="module")
def source() -> LedgerSource:
    return LedgerSource()


def all_rows(src: LedgerSource, start: datetime, end: datetime) -> dict[str, list[tuple]]:
    return {table: list(src.rows(table, start, end)) for table in TABLES}


def digest(src: LedgerSource, start: datetime, end: datetime) -> str:
    h = hashlib.sha256()
    for table in TABLES:
        for row in src.rows(table, start, end):
            h.update(repr(row).encode())
    return h.hexdigest()


# -- determinism ------------------------------------------------------------


def test_same_seed_same_rows_different_seed_different_rows() -> None:
    start = datetime(2021, 6, 1, 3, tzinfo=UTC)
    end = start + timedelta(minutes=20)
    a = all_rows(LedgerSource(seed=7), start, end)
    b = all_rows(LedgerSource(seed=7), start, end)
    c = all_rows(LedgerSource(seed=8), start, end)
    assert a == b
    assert all(a[t] for t in TABLES)
    for table in TABLES:
        assert a[table] != c[table]
    # Content, not only counts, depends on the seed.
    assert {r[2] for r in a["ledgers"]}.isdisjoint({r[2] for r in c["ledgers"]})


def test_same_window_twice_is_identical(source: LedgerSource) -> None:
    start = datetime(2022, 2, 2, tzinfo=UTC)
    end = start + timedelta(minutes=10)
    assert all_rows(source, start, end) == all_rows(source, start, end)


def test_deterministic_across_processes(source: LedgerSource) -> None:
    start = datetime(2023, 3, 3, 3, 3, tzinfo=UTC)
    end = start + timedelta(minutes=15)
    script = (
        "from datetime import datetime, timedelta, timezone\n"
        "import hashlib\n"
        "from tidemark.demo.stream import LedgerSource\n"
        "src = LedgerSource()\n"
        f"start = datetime.fromisoformat({start.isoformat()!r})\n"
        "end = start + timedelta(minutes=15)\n"
        "h = hashlib.sha256()\n"
        "for t in ('ledgers', 'transactions', 'operations'):\n"
        "    for row in src.rows(t, start, end):\n"
        "        h.update(repr(row).encode())\n"
        "print(h.hexdigest())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(PLUGINS), PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == digest(source, start, end)


# -- time model -------------------------------------------------------------


def test_first_ledger_at_epoch_and_gaps_within_bounds(source: LedgerSource) -> None:
    assert source.close_time(0) == EPOCH
    times = [source.close_time(s) for s in range(3 * PERIOD + 5)]
    gaps = [(b - a) / timedelta(milliseconds=1) for a, b in zip(times, times[1:])]
    assert all(4000 <= g <= 6000 for g in gaps)
    assert all(g == int(g) for g in gaps)  # whole milliseconds
    assert len(set(gaps)) > 100  # really irregular
    # One full period lasts exactly PERIOD * 5 s, so the long-run mean is 5 s.
    assert source.close_time(PERIOD) - source.close_time(0) == timedelta(seconds=5 * PERIOD)
    assert source.close_time(12345 + PERIOD) - source.close_time(12345) == timedelta(seconds=5 * PERIOD)
    assert 4.9 < sum(gaps[:500]) / 500 / 1000 < 5.1


def test_close_times_strictly_increasing_and_periodic_gaps(source: LedgerSource) -> None:
    for s in (0, 1, PERIOD - 1, PERIOD, 10 * PERIOD + 17, 123_456_789):
        assert source.close_time(s + 1) > source.close_time(s)
        gap = source.close_time(s + 1) - source.close_time(s)
        assert gap == source.close_time(s + PERIOD + 1) - source.close_time(s + PERIOD)


def test_first_sequence_at_or_after_matches_close_time(source: LedgerSource) -> None:
    rng = random.Random(3)
    for _ in range(2000):
        t = EPOCH + timedelta(microseconds=rng.randrange(0, 4 * 365 * 86_400_000_000))
        s = source.first_sequence_at_or_after(t)
        assert source.close_time(s) >= t
        if s > 0:
            assert source.close_time(s - 1) < t
    for s in (0, 1, PERIOD - 1, PERIOD, PERIOD + 1, 987_654):
        exact = source.close_time(s)
        assert source.first_sequence_at_or_after(exact) == s
        assert source.first_sequence_at_or_after(exact + timedelta(microseconds=1)) == s + 1
        assert source.first_sequence_at_or_after(exact - timedelta(microseconds=1)) == s


def test_before_epoch_is_empty(source: LedgerSource) -> None:
    start, end = EPOCH - timedelta(days=3), EPOCH - timedelta(days=1)
    assert all_rows(source, start, end) == {t: [] for t in TABLES}
    assert source.expected_counts(start, end) == {t: 0 for t in TABLES}
    assert all_rows(source, EPOCH - timedelta(hours=1), EPOCH) == {t: [] for t in TABLES}
    straddling = list(source.rows("ledgers", EPOCH - timedelta(hours=1), EPOCH + timedelta(seconds=12)))
    assert [r[1] for r in straddling][0] == 0
    assert straddling[0][0] == EPOCH


def test_custom_epoch() -> None:
    epoch = datetime(2024, 6, 1, 12, tzinfo=UTC)
    src = LedgerSource(epoch=epoch)
    assert src.close_time(0) == epoch
    assert src.expected_counts("2024-06-01", "2024-06-01T12:00")["ledgers"] == 0
    assert next(iter(src.rows("ledgers", "2024-06-01", "2024-06-02")))[0] == epoch


# -- counts -------------------------------------------------------------------


def random_window(rng: random.Random) -> tuple[datetime, datetime]:
    kind = rng.randrange(6)
    base = EPOCH + timedelta(microseconds=rng.randrange(-86_400_000_000, 800 * 86_400_000_000))
    if kind == 0:  # tiny, sub-gap
        return base, base + timedelta(microseconds=rng.randrange(1, 6_000_000))
    if kind == 1:  # empty
        return base, base
    if kind == 2:  # reversed
        return base, base - timedelta(minutes=5)
    if kind == 3:  # straddles a period boundary
        # Ledger k * PERIOD closes exactly k * PERIOD * 5 s after the epoch.
        boundary = EPOCH + timedelta(seconds=5 * PERIOD * rng.randrange(1, 5000))
        return boundary - timedelta(seconds=rng.randrange(1, 3000)), boundary + timedelta(
            seconds=rng.randrange(1, 3000)
        )
    if kind == 4:  # around the epoch
        return EPOCH - timedelta(seconds=rng.randrange(0, 100)), EPOCH + timedelta(
            microseconds=rng.randrange(0, 300_000_000)
        )
    return base, base + timedelta(microseconds=rng.randrange(1, 3 * 3_600_000_000))


def test_expected_counts_exact_for_random_windows(source: LedgerSource) -> None:
    rng = random.Random(99)
    nonzero = 0
    for _ in range(120):
        start, end = random_window(rng)
        actual = {t: sum(1 for _ in source.rows(t, start, end)) for t in TABLES}
        assert source.expected_counts(start, end) == actual, (start, end)
        nonzero += actual["ledgers"] > 0
    assert nonzero > 40


def test_expected_counts_over_long_range(source: LedgerSource) -> None:
    start = datetime(2020, 1, 3, 5, 6, 7, 891011, tzinfo=UTC)
    end = start + timedelta(hours=30)  # many periods
    actual = {t: sum(1 for _ in source.rows(t, start, end)) for t in TABLES}
    assert source.expected_counts(start, end) == actual
    assert 21_000 < actual["ledgers"] < 22_000  # 30 h / 5 s = 21,600


def test_expected_counts_additive_far_in_future(source: LedgerSource) -> None:
    a = datetime(2090, 1, 1, tzinfo=UTC)
    b = a + timedelta(days=365)
    c = b + timedelta(days=100, seconds=7)
    ab, bc, ac = (source.expected_counts(x, y) for x, y in ((a, b), (b, c), (a, c)))
    for t in TABLES:
        assert ab[t] + bc[t] == ac[t]
    assert abs(ab["ledgers"] - 365 * 86400 / 5) <= 2


def test_split_window_equals_concatenation(source: LedgerSource) -> None:
    rng = random.Random(5)
    start = datetime(2021, 1, 1, 23, 40, tzinfo=UTC)
    end = start + timedelta(hours=2)  # spans a period boundary and midnight
    whole = all_rows(source, start, end)
    for _ in range(5):
        cuts = sorted(
            start + timedelta(microseconds=rng.randrange(0, 7_200_000_000)) for _ in range(rng.randrange(1, 8))
        )
        # Include cuts exactly on ledger close times, where off-by-one errors hide.
        cuts.append(source.close_time(source.first_sequence_at_or_after(start + timedelta(minutes=30))))
        bounds = [start] + sorted(cuts) + [end]
        for table in TABLES:
            pieces: list[tuple] = []
            for lo, hi in zip(bounds, bounds[1:]):
                pieces.extend(source.rows(table, lo, hi))
            assert pieces == whole[table]


def test_record_batches_equal_rows_value_for_value(source: LedgerSource) -> None:
    """The columnar generator (numpy, what the loader uses) against the tuple reference."""
    import pyarrow as pa

    rng = random.Random(11)
    windows = [(EPOCH - timedelta(hours=1), EPOCH + timedelta(minutes=3)),  # before the epoch
               (datetime(2021, 1, 1, 23, 40, tzinfo=UTC), datetime(2021, 1, 2, 1, 40, tzinfo=UTC))]  # period boundary
    for _ in range(12):
        start = EPOCH + timedelta(microseconds=rng.randrange(0, 10**15))
        windows.append((start, start + timedelta(seconds=rng.randrange(0, 4 * 3600))))
    types = {"ledgers": [pa.int64(), pa.string(), pa.int32(), pa.int32(), pa.int64()],
             "transactions": [pa.int64(), pa.int32(), pa.string(), pa.string(), pa.int64(), pa.int32(), pa.bool_()],
             "operations": [pa.int64(), pa.int32(), pa.int32(), pa.string(), pa.string(), pa.int64()]}
    for start, end in windows:
        for table in TABLES:
            step = rng.choice([1, 7, 500, 4096])
            batches = list(source.record_batches(table, start, end, ledgers_per_batch=step))
            for b in batches:
                assert b.schema.names == list(COLUMNS[table])
                assert b.schema.types == [pa.timestamp("us", tz="UTC"), *types[table]]
            got = [tuple(r.values()) for b in batches for r in b.to_pylist()]
            assert got == list(source.rows(table, start, end)), (table, start, end, step)


# -- shapes, types and internal consistency --------------------------------------

HEX64 = re.compile(r"[0-9a-f]{64}")
ACCOUNT = re.compile(r"G[A-Z2-7]{55}")


def test_columns_declared() -> None:
    assert LedgerSource.tables == TABLES
    assert COLUMNS["ledgers"] == ("close_time", "sequence", "hash", "tx_count", "op_count", "total_fees")
    assert COLUMNS["transactions"] == (
        "close_time", "ledger_sequence", "tx_index", "hash", "account", "fee", "op_count", "successful",
    )
    assert COLUMNS["operations"] == (
        "close_time", "ledger_sequence", "tx_index", "op_index", "op_type", "asset", "amount",
    )


@pytest.fixture(scope="module")
def sample(source: LedgerSource) -> dict[str, list[tuple]]:
    start = datetime(2022, 7, 4, 10, tzinfo=UTC)
    return all_rows(source, start, start + timedelta(hours=3))


def test_row_shapes_and_types(sample: dict[str, list[tuple]]) -> None:
    start = datetime(2022, 7, 4, 10, tzinfo=UTC)
    end = start + timedelta(hours=3)
    for table in TABLES:
        assert sample[table]
        for row in sample[table]:
            assert type(row) is tuple and len(row) == len(COLUMNS[table])
            assert isinstance(row[0], datetime) and row[0].tzinfo is not None
            assert row[0].utcoffset() == timedelta(0)
            assert start <= row[0] < end
    for close_time, seq, h, tx_count, op_count, fees in sample["ledgers"]:
        assert type(seq) is int and type(tx_count) is int and type(op_count) is int and type(fees) is int
        assert HEX64.fullmatch(h)
        assert 0 <= tx_count <= 10
        assert tx_count <= op_count <= 4 * tx_count
        assert fees >= 100 * op_count
    for close_time, seq, tx, h, account, fee, ops, ok in sample["transactions"]:
        assert HEX64.fullmatch(h)
        assert ACCOUNT.fullmatch(account)
        assert 0 <= tx <= 9
        assert 1 <= ops <= 4
        assert type(fee) is int and fee >= 100 * ops
        assert type(ok) is bool
    for close_time, seq, tx, op, op_type, asset, amount in sample["operations"]:
        assert 0 <= op <= 3
        assert op_type in {"payment", "create_account", "manage_offer", "path_payment", "change_trust"}
        assert isinstance(asset, str) and 2 <= len(asset) <= 5
        assert type(amount) is int and 0 <= amount <= 10**12


def test_rows_in_key_order_and_ledgers_contiguous(sample: dict[str, list[tuple]]) -> None:
    ledgers = sample["ledgers"]
    seqs = [r[1] for r in ledgers]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert [r[0] for r in ledgers] == sorted({r[0] for r in ledgers})  # strictly increasing
    tx_keys = [(r[0], r[1], r[2]) for r in sample["transactions"]]
    assert tx_keys == sorted(set(tx_keys))
    op_keys = [(r[0], r[1], r[2], r[3]) for r in sample["operations"]]
    assert op_keys == sorted(set(op_keys))


def test_tables_agree_with_each_other(sample: dict[str, list[tuple]]) -> None:
    tx_per_ledger = Counter(r[1] for r in sample["transactions"])
    fees_per_ledger: Counter[int] = Counter()
    for r in sample["transactions"]:
        fees_per_ledger[r[1]] += r[5]
    ops_per_ledger = Counter(r[1] for r in sample["operations"])
    ops_per_tx = Counter((r[1], r[2]) for r in sample["operations"])
    close_of = {r[1]: r[0] for r in sample["ledgers"]}
    for close_time, seq, _, tx_count, op_count, total_fees in sample["ledgers"]:
        assert tx_per_ledger[seq] == tx_count
        assert ops_per_ledger[seq] == op_count
        assert fees_per_ledger[seq] == total_fees
    tx_indexes: dict[int, list[int]] = {}
    for close_time, seq, tx, _, _, _, op_count, _ in sample["transactions"]:
        assert ops_per_tx[(seq, tx)] == op_count
        assert close_of[seq] == close_time
        tx_indexes.setdefault(seq, []).append(tx)
    for seq, indexes in tx_indexes.items():
        assert indexes == list(range(len(indexes)))
    op_indexes: dict[tuple[int, int], list[int]] = {}
    for r in sample["operations"]:
        op_indexes.setdefault((r[1], r[2]), []).append(r[3])
    assert all(v == list(range(len(v))) for v in op_indexes.values())
    for r in sample["operations"]:
        assert close_of[r[1]] == r[0]


def test_counts_vary_like_real_traffic(sample: dict[str, list[tuple]]) -> None:
    tx_counts = [r[3] for r in sample["ledgers"]]
    assert len(set(tx_counts)) >= 8
    assert min(tx_counts) <= 1 and max(tx_counts) >= 9
    assert 4.5 < sum(tx_counts) / len(tx_counts) < 5.5
    ops = Counter(r[6] for r in sample["transactions"])
    assert set(ops) == {1, 2, 3, 4}


def test_value_distributions(sample: dict[str, list[tuple]]) -> None:
    txs = sample["transactions"]
    op_rows = sample["operations"]
    hashes = [r[3] for r in txs] + [r[2] for r in sample["ledgers"]]
    assert len(set(hashes)) == len(hashes)
    accounts = Counter(r[4] for r in txs)
    assert 1000 < len(accounts) <= 5000
    assert accounts.most_common(1)[0][1] > 3 * len(txs) / 5000  # skewed: some accounts are busy
    success = sum(r[7] for r in txs) / len(txs)
    assert 0.85 < success < 1.0
    types = Counter(r[4] for r in op_rows)
    assert len(types) == 5
    assert types.most_common(1)[0][0] == "payment"
    assets = Counter(r[5] for r in op_rows)
    assert len(assets) == 20
    assert "XLM" in assets and "USDC" in assets
    amounts = [r[6] for r in op_rows]
    assert len(set(amounts)) > len(amounts) * 0.9
    assert max(amounts) > 10**10
    fees = Counter(r[5] for r in txs)
    assert len(fees) > 10  # some surge pricing


def test_content_not_periodic(source: LedgerSource) -> None:
    a = list(source.rows("transactions", source.close_time(5000), source.close_time(5010)))
    b = list(source.rows("transactions", source.close_time(5000 + PERIOD), source.close_time(5010 + PERIOD)))
    assert [r[2] for r in a] == [r[2] for r in b]  # same counts structure by design
    assert [r[6] for r in a] == [r[6] for r in b]
    assert {r[3] for r in a}.isdisjoint({r[3] for r in b})  # but different content


def test_unknown_table_raises_keyerror_at_call(source: LedgerSource) -> None:
    with pytest.raises(KeyError, match="ledgers, transactions, operations"):
        source.rows("payments", EPOCH, EPOCH + timedelta(hours=1))


def test_accepts_string_bounds(source: LedgerSource) -> None:
    rows_str = list(source.rows("ledgers", "2021-01-01T00:00:00Z", "2021-01-01T00:05"))
    rows_dt = list(source.rows("ledgers", datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, 0, 5, tzinfo=UTC)))
    assert rows_str == rows_dt and rows_str
