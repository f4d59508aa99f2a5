"""The synthetic ledger stream's rows as Python tuples: the reference every other path must match.

Each table's row, field by field (``COLUMNS``), written straight from the
formulas in plain Python, so it is the readable statement of what the demo
generates and needs nothing beyond the standard library. The numpy/Arrow path
(``columns``) computes the same values a column at a time; a test holds the
two equal value for value. The loops are written for speed (locals, the
splitmix64 finaliser inlined): they are also what loads when numpy and
pyarrow are missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from tidemark.demo.pattern import MAX_AMOUNT, PERIOD, LedgerPattern
from tidemark.demo.splitmix import C1, C2, GAMMA, MASK

__all__ = ["COLUMNS", "GENERATORS", "TABLES"]

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


def _ledger_times(p: LedgerPattern, epoch: datetime, seqs: range) -> Iterator[tuple[int, int, datetime]]:
    """(sequence, position in period, close_time) with one datetime addition per ledger."""
    if not seqs:
        return
    deltas = p.offset_deltas
    periods, i = divmod(seqs.start, PERIOD)
    s = seqs.start
    stop = seqs.stop
    while s < stop:
        base = epoch + timedelta(milliseconds=periods * p.period_ms)
        last = min(PERIOD, i + stop - s)
        for j in range(i, last):
            yield s, j, base + deltas[j]
            s += 1
        periods += 1
        i = 0


def _ledger_rows(p: LedgerPattern, epoch: datetime, seqs: range) -> Iterator[tuple[Any, ...]]:
    tx_ops = p.tx_ops
    op_counts = p.op_counts
    ledger_key = p.ledger_key
    tx_key = p.tx_key
    hash_mul = p.ledger_hash_mul
    mask, gamma, c1, c2 = MASK, GAMMA, C1, C2
    for s, i, close_time in _ledger_times(p, epoch, seqs):
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


def _transaction_rows(p: LedgerPattern, epoch: datetime, seqs: range) -> Iterator[tuple[Any, ...]]:
    tx_ops = p.tx_ops
    tx_key = p.tx_key
    hash_mul = p.tx_hash_mul
    accounts = p.accounts
    pool = len(accounts)
    mask, gamma, c1, c2 = MASK, GAMMA, C1, C2
    for s, i, close_time in _ledger_times(p, epoch, seqs):
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


def _operation_rows(p: LedgerPattern, epoch: datetime, seqs: range) -> Iterator[tuple[Any, ...]]:
    op_slots = p.op_slots
    op_key = p.op_key
    op_types = p.op_types
    assets = p.assets
    modulus = MAX_AMOUNT + 1
    mask, gamma, c1, c2 = MASK, GAMMA, C1, C2
    for s, i, close_time in _ledger_times(p, epoch, seqs):
        base = s << 6
        for tx, op, suffix in op_slots[i]:
            z = ((base | suffix) * gamma + op_key) & mask
            z = ((z ^ (z >> 30)) * c1) & mask
            z = ((z ^ (z >> 27)) * c2) & mask
            z ^= z >> 31
            # Shifting by 0..31 bits skews amounts towards small values, like real payments.
            amount = ((z >> 24) % modulus) >> ((z >> 16) & 31)
            yield (close_time, s, tx, op, op_types[z & 0xFF], assets[(z >> 8) & 0xFF], amount)


# The rows of the ledgers ``seqs`` (closing from ``epoch`` on), in key order, per table.
GENERATORS: dict[str, Callable[[LedgerPattern, datetime, range], Iterator[tuple[Any, ...]]]] = {
    "ledgers": _ledger_rows,
    "transactions": _transaction_rows,
    "operations": _operation_rows,
}
