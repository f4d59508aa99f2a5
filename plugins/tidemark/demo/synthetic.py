"""Deterministic synthetic "ledgers" workload used as Tidemark's demo source.

The demo needs a source that behaves like a real ledger stream (irregular
close times, bursty transaction counts, skewed accounts and operation types)
yet is reproducible and checkable: any window must yield identical rows in
every process, a window split into pieces must yield the same rows as the
whole, and the exact row count of any window must be known without generating
it, so tests can prove a backfill loaded everything exactly once.

The trick is to make everything that determines *how many* rows exist periodic
in the ledger sequence (period ``PERIOD``), precomputed once per seed with
prefix sums; counts and time lookups are then a division plus a bisect.  Row
*contents* (hashes, accounts, fees, amounts) are not periodic: they come from
a splitmix64 hash of the sequence number and the seed.

Rows come two ways from the same formulas: ``rows()`` yields tuples (the
reference, pure Python), ``record_batches()`` computes whole columns with
numpy's wrapping uint64 arithmetic into Arrow record batches, so the demo's
loader spends its time in COPY rather than in a Python loop per value (about
10x faster; a test holds the two equal value for value).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from tidemark.errors import InvalidInput
from tidemark.model.timeparse import parse_instant

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from tidemark.model.dataset import Hypertable

__all__ = ["COLUMNS", "PERIOD", "TABLES", "LedgerSource", "SyntheticLedgers", "ledger_source"]

PERIOD = 1009  # ledgers per repeat of the count/gap pattern; prime to avoid aliasing with hours/days
_MEAN_GAP_MS = 5_000
_MIN_GAP_MS = 4_000
_MAX_GAP_MS = 6_000
_MAX_TX = 10  # per ledger; tx_index fits in 4 bits of a key
_MAX_OPS = 4  # per transaction; op_index fits in 2 bits of a key
_ACCOUNT_POOL = 5_000
_MAX_AMOUNT = 10**12

TABLES: tuple[str, ...] = ("ledgers", "transactions", "operations")
COLUMNS: dict[str, tuple[str, ...]] = {
    "ledgers": ("close_time", "sequence", "hash", "tx_count", "op_count", "total_fees"),
    "transactions": (
        "close_time",
        "ledger_sequence",
        "tx_index",
        "hash",
        "account",
        "fee",
        "op_count",
        "successful",
    ),
    "operations": (
        "close_time",
        "ledger_sequence",
        "tx_index",
        "op_index",
        "op_type",
        "asset",
        "amount",
    ),
}

_OP_TYPE_WEIGHTS = (
    ("payment", 55),
    ("manage_offer", 20),
    ("path_payment", 10),
    ("create_account", 10),
    ("change_trust", 5),
)
_ASSET_WEIGHTS = (
    ("XLM", 40), ("USDC", 15), ("EURC", 5), ("AQUA", 5), ("yXLM", 4),
    ("BTC", 3), ("ETH", 3), ("SHX", 3), ("MOBI", 2), ("RMT", 2),
    ("SLT", 2), ("TERN", 2), ("LSP", 2), ("ARST", 2), ("BRL", 2),
    ("NGNT", 2), ("EURT", 2), ("XRP", 2), ("VELO", 2), ("KES", 1),
)
_OPS_PER_TX_WEIGHTS = ((1, 35), (2, 30), (3, 20), (4, 15))
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_US = timedelta(microseconds=1)
_UTC = timezone.utc
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
LEDGERS_PER_RECORD_BATCH = 2_048  # ~25,000 operation rows: pieces small enough to overlap encoding and reading


def _mix(z: int) -> int:
    """splitmix64 finaliser: a bijection on 64-bit ints, so distinct keys stay distinct."""
    z &= _MASK
    z = ((z ^ (z >> 30)) * _C1) & _MASK
    z = ((z ^ (z >> 27)) * _C2) & _MASK
    return z ^ (z >> 31)


class _Stream:
    """Seeded splitmix64 sequence for the one-off period tables.

    Used instead of ``random.Random`` because only its ``random()`` output is
    guaranteed stable across Python versions, and the tables must never change.
    """

    def __init__(self, seed: int) -> None:
        self._state = _mix(seed ^ 0x5EED_7AB1_E000_0000)

    def next(self) -> int:
        self._state = (self._state + _GAMMA) & _MASK
        return _mix(self._state)


def _weighted_table(weights: tuple[tuple[Any, int], ...], size: int = 256) -> tuple[Any, ...]:
    """Lookup table so a weighted choice costs one index with 8 random bits."""
    total = sum(weight for _, weight in weights)
    table: list[Any] = []
    for value, weight in weights:
        table.extend([value] * round(weight * size / total))
    table = (table + [weights[0][0]] * size)[:size]
    return tuple(table)


class LedgerSource:
    """A reproducible ledger stream starting at ``epoch``, one ledger about every 5 s."""

    tables: tuple[str, ...] = TABLES
    columns: dict[str, tuple[str, ...]] = COLUMNS
    period: int = PERIOD

    def __init__(self, seed: int = 42, epoch: datetime = datetime(2020, 1, 1, tzinfo=_UTC)) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInput(f"seed {seed!r} must be an integer; use e.g. 42")
        self.seed = seed
        self.epoch = parse_instant(epoch)
        stream = _Stream(seed)

        gaps = [_MEAN_GAP_MS + stream.next() % 2001 - 1000 for _ in range(PERIOD)]
        self._balance_gaps(gaps)
        offsets = [0] * (PERIOD + 1)
        for i, gap in enumerate(gaps):
            offsets[i + 1] = offsets[i] + gap
        self._period_ms = offsets[PERIOD]
        self._offsets = offsets
        self._offset_deltas = tuple(timedelta(milliseconds=ms) for ms in offsets[:PERIOD])

        ops_choice = _weighted_table(_OPS_PER_TX_WEIGHTS)
        tx_ops: list[tuple[int, ...]] = []
        for _ in range(PERIOD):
            # Popcount of 10 random bits: binomial 0..10, mean 5, like bursty traffic.
            tx_count = (stream.next() & 0x3FF).bit_count()
            tx_ops.append(tuple(ops_choice[stream.next() & 0xFF] for _ in range(tx_count)))
        self._tx_ops = tuple(tx_ops)
        self._op_counts = tuple(sum(ops) for ops in tx_ops)
        # (tx_index, op_index, key suffix) per ledger, so the operations loop is flat.
        self._op_slots = tuple(
            tuple((tx, op, (tx << 2) | op) for tx, n in enumerate(ops) for op in range(n))
            for ops in tx_ops
        )
        self._tx_prefix = [0] * (PERIOD + 1)
        self._op_prefix = [0] * (PERIOD + 1)
        for i in range(PERIOD):
            self._tx_prefix[i + 1] = self._tx_prefix[i] + len(tx_ops[i])
            self._op_prefix[i + 1] = self._op_prefix[i] + self._op_counts[i]

        self._ledger_key = stream.next()
        self._tx_key = stream.next()
        self._op_key = stream.next()
        # Odd multipliers below 2**192: x * K is a bijection that spreads a
        # 64-bit word over 256 bits, giving unique 64-hex-digit hashes cheaply.
        self._ledger_hash_mul = ((stream.next() << 128) | (stream.next() << 64) | stream.next()) | (1 << 191) | 1
        self._tx_hash_mul = ((stream.next() << 128) | (stream.next() << 64) | stream.next()) | (1 << 191) | 1
        self._accounts = self._make_accounts(stream)
        self._op_types = _weighted_table(_OP_TYPE_WEIGHTS)
        self._assets = _weighted_table(_ASSET_WEIGHTS)

    # -- time <-> sequence -------------------------------------------------

    def close_time(self, sequence: int) -> datetime:
        """Close time of ledger ``sequence`` (>= 0)."""
        if sequence < 0:
            raise ValueError(f"ledger sequence {sequence} is negative; sequences start at 0")
        periods, i = divmod(sequence, PERIOD)
        return self.epoch + timedelta(milliseconds=periods * self._period_ms + self._offsets[i])

    def first_sequence_at_or_after(self, t: str | datetime) -> int:
        """Smallest sequence whose close time is >= ``t``; 0 for any ``t`` before the epoch."""
        delta_us = (parse_instant(t) - self.epoch) // _US
        if delta_us <= 0:
            return 0
        ms = -(-delta_us // 1000)
        periods, rest = divmod(ms, self._period_ms)
        return periods * PERIOD + bisect.bisect_left(self._offsets, rest, 0, PERIOD)

    def sequence_range(self, start: str | datetime, end: str | datetime) -> range:
        """Sequences of the ledgers closing in ``[start, end)`` (empty if end <= start)."""
        first = self.first_sequence_at_or_after(start)
        stop = self.first_sequence_at_or_after(end)
        return range(first, max(first, stop))

    # -- counts ------------------------------------------------------------

    def expected_counts(self, start: str | datetime, end: str | datetime) -> dict[str, int]:
        """Exact row counts per table for ``[start, end)`` without generating rows."""
        seqs = self.sequence_range(start, end)
        return {
            "ledgers": len(seqs),
            "transactions": self._prefix(self._tx_prefix, seqs.stop) - self._prefix(self._tx_prefix, seqs.start),
            "operations": self._prefix(self._op_prefix, seqs.stop) - self._prefix(self._op_prefix, seqs.start),
        }

    @staticmethod
    def _prefix(table: list[int], sequence: int) -> int:
        periods, i = divmod(sequence, PERIOD)
        return periods * table[PERIOD] + table[i]

    # -- rows --------------------------------------------------------------

    def rows(self, table: str, start: str | datetime, end: str | datetime) -> Iterator[tuple[Any, ...]]:
        """Rows of ``table`` whose close_time is in ``[start, end)``, in key order.

        Not a generator itself so that an unknown table fails at the call,
        not at the first ``next()`` deep inside a loader.
        """
        if table == "ledgers":
            generate = self._ledger_rows
        elif table == "transactions":
            generate = self._transaction_rows
        elif table == "operations":
            generate = self._operation_rows
        else:
            raise KeyError(f"unknown table {table!r}; LedgerSource has tables {', '.join(TABLES)}")
        return generate(self.sequence_range(start, end))

    def _ledger_times(self, seqs: range) -> Iterator[tuple[int, int, datetime]]:
        """(sequence, position in period, close_time) with one datetime addition per ledger."""
        if not seqs:
            return
        deltas = self._offset_deltas
        periods, i = divmod(seqs.start, PERIOD)
        s = seqs.start
        stop = seqs.stop
        while s < stop:
            base = self.epoch + timedelta(milliseconds=periods * self._period_ms)
            last = min(PERIOD, i + stop - s)
            for j in range(i, last):
                yield s, j, base + deltas[j]
                s += 1
            periods += 1
            i = 0

    def _ledger_rows(self, seqs: range) -> Iterator[tuple[Any, ...]]:
        tx_ops = self._tx_ops
        op_counts = self._op_counts
        ledger_key = self._ledger_key
        tx_key = self._tx_key
        hash_mul = self._ledger_hash_mul
        mask, gamma, c1, c2 = _MASK, _GAMMA, _C1, _C2
        for s, i, close_time in self._ledger_times(seqs):
            ops = tx_ops[i]
            total_fees = 0
            base = s << 4
            for tx, n_ops in enumerate(ops):
                z = ((base | tx) * gamma + tx_key) & mask
                z = ((z ^ (z >> 30)) * c1) & mask
                z = ((z ^ (z >> 27)) * c2) & mask
                z ^= z >> 31
                total_fees += n_ops * (100 + (z >> 44) % 10_000 if (z >> 8) & 7 == 0 else 100)
            z = (s * gamma + ledger_key) & mask
            z = ((z ^ (z >> 30)) * c1) & mask
            z = ((z ^ (z >> 27)) * c2) & mask
            z ^= z >> 31
            yield (close_time, s, "%064x" % (z * hash_mul), len(ops), op_counts[i], total_fees)

    def _transaction_rows(self, seqs: range) -> Iterator[tuple[Any, ...]]:
        tx_ops = self._tx_ops
        tx_key = self._tx_key
        hash_mul = self._tx_hash_mul
        accounts = self._accounts
        pool = len(accounts)
        mask, gamma, c1, c2 = _MASK, _GAMMA, _C1, _C2
        for s, i, close_time in self._ledger_times(seqs):
            base = s << 4
            for tx, n_ops in enumerate(tx_ops[i]):
                z = ((base | tx) * gamma + tx_key) & mask
                z = ((z ^ (z >> 30)) * c1) & mask
                z = ((z ^ (z >> 27)) * c2) & mask
                z ^= z >> 31
                # Product of two uniforms: a few accounts are very busy, most are quiet.
                account = accounts[((z >> 16) % pool) * ((z >> 32) % pool) // pool]
                fee = n_ops * (100 + (z >> 44) % 10_000 if (z >> 8) & 7 == 0 else 100)
                yield (
                    close_time,
                    s,
                    tx,
                    "%064x" % (z * hash_mul),
                    account,
                    fee,
                    n_ops,
                    (z >> 11) & 31 != 0,
                )

    def _operation_rows(self, seqs: range) -> Iterator[tuple[Any, ...]]:
        op_slots = self._op_slots
        op_key = self._op_key
        op_types = self._op_types
        assets = self._assets
        modulus = _MAX_AMOUNT + 1
        mask, gamma, c1, c2 = _MASK, _GAMMA, _C1, _C2
        for s, i, close_time in self._ledger_times(seqs):
            base = s << 6
            for tx, op, suffix in op_slots[i]:
                z = ((base | suffix) * gamma + op_key) & mask
                z = ((z ^ (z >> 30)) * c1) & mask
                z = ((z ^ (z >> 27)) * c2) & mask
                z ^= z >> 31
                # Shifting by 0..31 bits skews amounts towards small values, like real payments.
                amount = ((z >> 24) % modulus) >> ((z >> 16) & 31)
                yield (close_time, s, tx, op, op_types[z & 0xFF], assets[(z >> 8) & 0xFF], amount)

    # -- columns (numpy + Arrow) -------------------------------------------

    def record_batches(
        self, table: str, start: str | datetime, end: str | datetime, ledgers_per_batch: int = LEDGERS_PER_RECORD_BATCH
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``rows(table, start, end)`` as Arrow record batches, equal value for value.

        Each batch covers ``ledgers_per_batch`` ledgers. Needs numpy and pyarrow
        (``tidemark[parquet]``); ``tidemark.load.arrow_data.available()`` says whether they are there.
        """
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}; LedgerSource has tables {', '.join(TABLES)}")
        seqs = self.sequence_range(start, end)
        return self._record_batches(table, seqs, ledgers_per_batch)

    def _record_batches(self, table: str, seqs: range, step: int) -> Iterator[pa.RecordBatch]:
        build = {"ledgers": self._ledger_batch, "transactions": self._transaction_batch,
                 "operations": self._operation_batch}[table]
        for lo in range(seqs.start, seqs.stop, step):
            yield build(_Ledgers.of(self, range(lo, min(lo + step, seqs.stop))))

    @functools.cached_property
    def _np(self) -> _PeriodArrays:
        return _PeriodArrays.of(self)

    def _ledger_batch(self, led: _Ledgers) -> pa.RecordBatch:
        import numpy as np
        import pyarrow as pa

        t = self._np
        txs = led.expand(t.tx_prefix)
        z = _mix_np(((led.seq[txs.owner] << np.uint64(4)) | t.tx_index[txs.flat]) * np.uint64(_GAMMA)
                    + np.uint64(self._tx_key))
        fees = _fees(z, t.tx_ops[txs.flat])
        total_fees = np.bincount(txs.owner, weights=fees, minlength=len(led.seq)).astype(np.int64)  # exact: < 2**53
        zl = _mix_np(led.seq * np.uint64(_GAMMA) + np.uint64(self._ledger_key))
        return pa.RecordBatch.from_arrays(
            [led.close_time(), pa.array(led.seq.astype(np.int64)), _hex256(zl, self._ledger_hash_mul),
             pa.array(t.tx_count[led.pos].astype(np.int32)), pa.array(t.op_count[led.pos].astype(np.int32)),
             pa.array(total_fees)],
            names=list(COLUMNS["ledgers"]),
        )

    def _transaction_batch(self, led: _Ledgers) -> pa.RecordBatch:
        import numpy as np
        import pyarrow as pa

        t = self._np
        txs = led.expand(t.tx_prefix)
        seq = led.seq[txs.owner]
        tx = t.tx_index[txs.flat]
        n_ops = t.tx_ops[txs.flat]
        z = _mix_np(((seq << np.uint64(4)) | tx) * np.uint64(_GAMMA) + np.uint64(self._tx_key))
        pool = np.uint64(len(self._accounts))
        account = ((z >> np.uint64(16)) % pool) * ((z >> np.uint64(32)) % pool) // pool
        return pa.RecordBatch.from_arrays(
            [led.close_time(txs.owner), pa.array(seq.astype(np.int64)), pa.array(tx.astype(np.int32)),
             _hex256(z, self._tx_hash_mul), t.accounts.take(pa.array(account.astype(np.int64))),
             pa.array(_fees(z, n_ops)), pa.array(n_ops.astype(np.int32)),
             pa.array(((z >> np.uint64(11)) & np.uint64(31)) != 0)],
            names=list(COLUMNS["transactions"]),
        )

    def _operation_batch(self, led: _Ledgers) -> pa.RecordBatch:
        import numpy as np
        import pyarrow as pa

        t = self._np
        ops = led.expand(t.op_prefix)
        seq = led.seq[ops.owner]
        z = _mix_np(((seq << np.uint64(6)) | t.op_suffix[ops.flat]) * np.uint64(_GAMMA) + np.uint64(self._op_key))
        amount = ((z >> np.uint64(24)) % np.uint64(_MAX_AMOUNT + 1)) >> ((z >> np.uint64(16)) & np.uint64(31))
        return pa.RecordBatch.from_arrays(
            [led.close_time(ops.owner), pa.array(seq.astype(np.int64)),
             pa.array((t.op_suffix[ops.flat] >> np.uint64(2)).astype(np.int32)),
             pa.array((t.op_suffix[ops.flat] & np.uint64(3)).astype(np.int32)),
             t.op_types.take(pa.array((z & np.uint64(0xFF)).astype(np.int64))),
             t.assets.take(pa.array(((z >> np.uint64(8)) & np.uint64(0xFF)).astype(np.int64))),
             pa.array(amount.astype(np.int64))],
            names=list(COLUMNS["operations"]),
        )

    # -- one-off tables ----------------------------------------------------

    @staticmethod
    def _balance_gaps(gaps: list[int]) -> None:
        """Nudge gaps (within 4-6 s) so one period lasts exactly PERIOD * 5 s.

        An exact period length is what makes close times a division plus a
        table lookup; walking round-robin keeps the nudges spread out.
        """
        excess = sum(gaps) - PERIOD * _MEAN_GAP_MS
        i = 0
        while excess:
            if excess > 0:
                step = min(excess, gaps[i] - _MIN_GAP_MS, 7)
            else:
                step = max(excess, gaps[i] - _MAX_GAP_MS, -7)
            gaps[i] -= step
            excess -= step
            i = (i + 1) % PERIOD

    @staticmethod
    def _make_accounts(stream: _Stream) -> tuple[str, ...]:
        """Pool of unique Stellar-looking account ids ('G' + 55 base32 characters)."""
        accounts: list[str] = []
        seen: set[str] = set()
        while len(accounts) < _ACCOUNT_POOL:
            bits = (stream.next() << 256) | (stream.next() << 192) | (stream.next() << 128) | (
                stream.next() << 64
            ) | stream.next()
            account = "G" + "".join(_BASE32[(bits >> (5 * k)) & 31] for k in range(55))
            if account not in seen:
                seen.add(account)
                accounts.append(account)
        return tuple(accounts)


class _Expanded(NamedTuple):
    owner: np.ndarray  # position of each child row's ledger within the batch
    flat: np.ndarray  # index of each child row in the period's flat table


class _Ledgers(NamedTuple):
    """One record batch's ledgers as arrays, with the sequence split into period and position."""

    source: LedgerSource
    seq: np.ndarray  # uint64
    period: np.ndarray  # int64
    pos: np.ndarray  # int64, position within the period

    @classmethod
    def of(cls, source: LedgerSource, seqs: range) -> _Ledgers:
        import numpy as np

        seq = np.arange(seqs.start, seqs.stop, dtype=np.uint64)
        signed = seq.astype(np.int64)
        return cls(source, seq, signed // PERIOD, signed % PERIOD)

    def close_time(self, owner: np.ndarray | None = None) -> pa.Array:
        import pyarrow as pa

        src = self.source
        epoch_us = (src.epoch - _UNIX_EPOCH) // _US
        us = epoch_us + (self.period * src._period_ms + src._np.offsets_ms[self.pos]) * 1000
        return pa.array(us if owner is None else us[owner], type=pa.timestamp("us", tz="UTC"))

    def expand(self, prefix: np.ndarray) -> _Expanded:
        """Child rows (transactions or operations) of these ledgers, in key order.

        ``prefix[i]`` is where the children of position ``i`` start in the period's
        flat table, so each ledger's children are one slice of it.
        """
        import numpy as np

        first = prefix[self.pos]
        counts = prefix[self.pos + 1] - first
        owner = np.repeat(np.arange(len(self.seq)), counts)
        before = np.cumsum(counts) - counts  # children of the batch's earlier ledgers
        flat = first[owner] + (np.arange(int(counts.sum())) - before[owner])
        return _Expanded(owner, flat)


class _PeriodArrays(NamedTuple):
    """The per-period tables of a LedgerSource as numpy/Arrow arrays, built once per source."""

    offsets_ms: np.ndarray
    tx_count: np.ndarray
    op_count: np.ndarray
    tx_prefix: np.ndarray  # PERIOD + 1
    op_prefix: np.ndarray
    tx_index: np.ndarray  # uint64, per transaction of the period
    tx_ops: np.ndarray  # int64, operations of each transaction
    op_suffix: np.ndarray  # uint64, (tx_index << 2) | op_index per operation of the period
    accounts: pa.Array
    op_types: pa.Array  # 256-entry lookup tables
    assets: pa.Array

    @classmethod
    def of(cls, src: LedgerSource) -> _PeriodArrays:
        import numpy as np
        import pyarrow as pa

        i64 = np.int64
        return cls(
            offsets_ms=np.array(src._offsets[:PERIOD], dtype=i64),
            tx_count=np.array([len(ops) for ops in src._tx_ops], dtype=i64),
            op_count=np.array(src._op_counts, dtype=i64),
            tx_prefix=np.array(src._tx_prefix, dtype=i64),
            op_prefix=np.array(src._op_prefix, dtype=i64),
            tx_index=np.array([tx for ops in src._tx_ops for tx in range(len(ops))], dtype=np.uint64),
            tx_ops=np.array([n for ops in src._tx_ops for n in ops], dtype=i64),
            op_suffix=np.array([suffix for slots in src._op_slots for _, _, suffix in slots], dtype=np.uint64),
            accounts=pa.array(src._accounts, type=pa.string()),
            op_types=pa.array(src._op_types, type=pa.string()),
            assets=pa.array(src._assets, type=pa.string()),
        )


def _mix_np(z: np.ndarray) -> np.ndarray:
    """``_mix`` over a uint64 array: numpy's uint64 arithmetic wraps modulo 2**64 like ``& _MASK``."""
    import numpy as np

    z = (z ^ (z >> np.uint64(30))) * np.uint64(_C1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_C2)
    mixed: np.ndarray = z ^ (z >> np.uint64(31))
    return mixed


def _fees(z: np.ndarray, n_ops: np.ndarray) -> np.ndarray:
    import numpy as np

    surcharge = ((z >> np.uint64(8)) & np.uint64(7)) == 0
    base = np.where(surcharge, 100 + ((z >> np.uint64(44)) % np.uint64(10_000)).astype(np.int64), 100)
    return (n_ops * base).astype(np.int64)


_HEX_DIGITS = b"0123456789abcdef"


def _hex256(z: np.ndarray, multiplier: int) -> pa.Array:
    """``"%064x" % (z * multiplier)`` per element, for a multiplier below 2**192: 64-bit limbs, carries by hand."""
    import numpy as np
    import pyarrow as pa

    words = [np.uint64((multiplier >> (64 * k)) & _MASK) for k in range(3)]
    products = [_mul_64x64(z, w) for w in words]  # (hi, lo) of z * word_k
    w0 = products[0][1]
    w1 = products[0][0] + products[1][1]
    c1 = (w1 < products[0][0]).astype(np.uint64)
    t = products[1][0] + products[2][1]
    c2 = (t < products[1][0]).astype(np.uint64)
    w2 = t + c1
    c2 |= (w2 < t).astype(np.uint64)
    w3 = products[2][0] + c2  # no carry out: the product is below 2**256
    be = np.stack([w3, w2, w1, w0], axis=1).astype(">u8").view(np.uint8)  # (n, 32) big-endian bytes
    digits = np.frombuffer(_HEX_DIGITS, dtype=np.uint8)
    text = np.empty((len(z), 64), dtype=np.uint8)
    text[:, 0::2] = digits[be >> 4]
    text[:, 1::2] = digits[be & 15]
    offsets = np.arange(0, 64 * (len(z) + 1), 64, dtype=np.int32)
    return pa.StringArray.from_buffers(len(z), pa.py_buffer(offsets), pa.py_buffer(text))


def _mul_64x64(a: np.ndarray, b: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """The 128-bit product of uint64 ``a`` and ``b`` as (high, low) words, from 32-bit halves."""
    import numpy as np

    m32 = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    al, ah = a & m32, a >> s32
    bl, bh = b & m32, b >> s32
    ll, lh, hl, hh = al * bl, al * bh, ah * bl, ah * bh
    mid = (ll >> s32) + (lh & m32) + (hl & m32)
    return hh + (lh >> s32) + (hl >> s32) + (mid >> s32), a * b


class SyntheticLedgers:
    """The ledger stream as a Tidemark source: one object feeds all three tables, counts exactly.

    Its tip is now: the stream is unbounded, like a live chain.
    """

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed
        self._stream: LedgerSource | None = None

    @property
    def stream(self) -> LedgerSource:
        # Built on first use (~0.1 s), not at DAG parse time.
        if self._stream is None:
            self._stream = LedgerSource(seed=self.seed)
        return self._stream

    def read(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> Iterator[tuple[str, Any]]:
        from tidemark.load import arrow_data

        if not arrow_data.available():  # tuples: the same rows, only slower to encode
            for table in tables:
                yield table.name, self.stream.rows(table.name, start, end)
            return
        for table in tables:
            for batch in self.stream.record_batches(table.name, start, end):
                yield table.name, batch

    def expected_counts(self, tables: Sequence[Hypertable], start: datetime, end: datetime) -> dict[str, int]:
        counts = self.stream.expected_counts(start, end)
        return {t.name: counts[t.name] for t in tables}

    def tip(self, tables: Sequence[Hypertable]) -> datetime:
        return datetime.now(_UTC)

    def describe(self) -> str:
        return f"synthetic ledger stream (seed {self.seed})"


@functools.lru_cache(maxsize=8)
def ledger_source(seed: int = 42) -> SyntheticLedgers:
    """One source per seed and process: its period tables are built once, and it only reads them after."""
    return SyntheticLedgers(seed)
