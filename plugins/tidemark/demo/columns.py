"""The synthetic ledger stream's rows computed a column at a time, with numpy, into Arrow record batches.

The same values as ``rows`` (a test holds the two equal value for value), from
the same ``LedgerPattern`` and splitmix64 keys, but with numpy's wrapping
uint64 arithmetic over whole columns instead of a Python loop per value: the
demo's loader then spends its time in COPY rather than in generating (about
10x faster). Needs numpy and pyarrow (``tidemark[parquet]``); they are
imported only when a batch is built, so the rest of the stream works without.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, NamedTuple

from tidemark.demo.pattern import MAX_AMOUNT, PERIOD, LedgerPattern
from tidemark.demo.rows import COLUMNS
from tidemark.demo.splitmix import GAMMA, MASK, mix_array

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = ["LEDGERS_PER_RECORD_BATCH", "LedgerColumns"]

LEDGERS_PER_RECORD_BATCH = 2_048  # ~25,000 operation rows: pieces small enough to overlap encoding and reading
_US = timedelta(microseconds=1)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class LedgerColumns:
    """Record batches of one stream (a pattern and an epoch); its pattern's numpy arrays are built at the first batch."""

    def __init__(self, pattern: LedgerPattern, epoch: datetime) -> None:
        self._pattern = pattern
        self._epoch_us = (epoch - _UNIX_EPOCH) // _US

    def batches(self, table: str, seqs: range, step: int) -> Iterator[pa.RecordBatch]:
        """The rows of ``table`` for the ledgers ``seqs``, ``step`` ledgers a batch, in key order."""
        build = {"ledgers": self._ledger_batch, "transactions": self._transaction_batch,
                 "operations": self._operation_batch}[table]
        for lo in range(seqs.start, seqs.stop, step):
            yield build(self._ledgers(range(lo, min(lo + step, seqs.stop))))

    @functools.cached_property
    def _np(self) -> _PeriodArrays:
        return _PeriodArrays.of(self._pattern)

    def _ledgers(self, seqs: range) -> _Ledgers:
        import numpy as np

        seq = np.arange(seqs.start, seqs.stop, dtype=np.uint64)
        signed = seq.astype(np.int64)
        period, pos = signed // PERIOD, signed % PERIOD
        close_us = self._epoch_us + (period * self._pattern.period_ms + self._np.offsets_ms[pos]) * 1000
        return _Ledgers(seq, pos, close_us)

    def _ledger_batch(self, led: _Ledgers) -> pa.RecordBatch:
        import numpy as np
        import pyarrow as pa

        t = self._np
        txs = led.expand(t.tx_prefix)
        z = mix_array(((led.seq[txs.owner] << np.uint64(4)) | t.tx_index[txs.flat]) * np.uint64(GAMMA)
                      + np.uint64(self._pattern.tx_key))
        fees = _fees(z, t.tx_ops[txs.flat])
        total_fees = np.bincount(txs.owner, weights=fees, minlength=len(led.seq)).astype(np.int64)  # exact: < 2**53
        zl = mix_array(led.seq * np.uint64(GAMMA) + np.uint64(self._pattern.ledger_key))
        return pa.RecordBatch.from_arrays(
            [led.close_time(), pa.array(led.seq.astype(np.int64)), _hex256(zl, self._pattern.ledger_hash_mul),
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
        z = mix_array(((seq << np.uint64(4)) | tx) * np.uint64(GAMMA) + np.uint64(self._pattern.tx_key))
        pool = np.uint64(len(self._pattern.accounts))
        account = ((z >> np.uint64(16)) % pool) * ((z >> np.uint64(32)) % pool) // pool
        return pa.RecordBatch.from_arrays(
            [led.close_time(txs.owner), pa.array(seq.astype(np.int64)), pa.array(tx.astype(np.int32)),
             _hex256(z, self._pattern.tx_hash_mul), t.accounts.take(pa.array(account.astype(np.int64))),
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
        z = mix_array(((seq << np.uint64(6)) | t.op_suffix[ops.flat]) * np.uint64(GAMMA)
                      + np.uint64(self._pattern.op_key))
        amount = ((z >> np.uint64(24)) % np.uint64(MAX_AMOUNT + 1)) >> ((z >> np.uint64(16)) & np.uint64(31))
        return pa.RecordBatch.from_arrays(
            [led.close_time(ops.owner), pa.array(seq.astype(np.int64)),
             pa.array((t.op_suffix[ops.flat] >> np.uint64(2)).astype(np.int32)),
             pa.array((t.op_suffix[ops.flat] & np.uint64(3)).astype(np.int32)),
             t.op_types.take(pa.array((z & np.uint64(0xFF)).astype(np.int64))),
             t.assets.take(pa.array(((z >> np.uint64(8)) & np.uint64(0xFF)).astype(np.int64))),
             pa.array(amount.astype(np.int64))],
            names=list(COLUMNS["operations"]),
        )


class _Expanded(NamedTuple):
    owner: np.ndarray  # position of each child row's ledger within the batch
    flat: np.ndarray  # index of each child row in the period's flat table


class _Ledgers(NamedTuple):
    """One record batch's ledgers as arrays."""

    seq: np.ndarray  # uint64
    pos: np.ndarray  # int64, position within the period
    close_us: np.ndarray  # int64, close time in microseconds since the Unix epoch

    def close_time(self, owner: np.ndarray | None = None) -> pa.Array:
        import pyarrow as pa

        us = self.close_us
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
    """A LedgerPattern's per-period tables as numpy/Arrow arrays, built once per stream."""

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
    def of(cls, p: LedgerPattern) -> _PeriodArrays:
        import numpy as np
        import pyarrow as pa

        i64 = np.int64
        return cls(
            offsets_ms=np.array(p.offsets[:PERIOD], dtype=i64),
            tx_count=np.array([len(ops) for ops in p.tx_ops], dtype=i64),
            op_count=np.array(p.op_counts, dtype=i64),
            tx_prefix=np.array(p.tx_prefix, dtype=i64),
            op_prefix=np.array(p.op_prefix, dtype=i64),
            tx_index=np.array([tx for ops in p.tx_ops for tx in range(len(ops))], dtype=np.uint64),
            tx_ops=np.array([n for ops in p.tx_ops for n in ops], dtype=i64),
            op_suffix=np.array([suffix for slots in p.op_slots for _, _, suffix in slots], dtype=np.uint64),
            accounts=pa.array(p.accounts, type=pa.string()),
            op_types=pa.array(p.op_types, type=pa.string()),
            assets=pa.array(p.assets, type=pa.string()),
        )


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

    words = [np.uint64((multiplier >> (64 * k)) & MASK) for k in range(3)]
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
