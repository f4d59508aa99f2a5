"""The synthetic ledger stream's per-seed pattern: what repeats every ``PERIOD`` ledgers, and its hash keys.

The stream must know the exact row count of any window without generating
it, so tests can prove a backfill loaded everything exactly once. So
everything that decides *how many* rows exist (the gaps between close times,
the transactions per ledger, the operations per transaction) repeats every
``PERIOD`` ledgers and is drawn once per seed, here, with prefix sums: counts
and time lookups are then a division plus a bisect. Row *contents* are not
periodic; they hash the sequence number with the keys, hash multipliers and
lookup tables also drawn here.

Both generators (``rows`` and ``columns``) read this one object, so the draw
order below, and with it every value the demo generates, is fixed in one place.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tidemark.demo.splitmix import SplitMix64

__all__ = ["MAX_AMOUNT", "PERIOD", "LedgerPattern", "count_before"]

PERIOD = 1009  # ledgers per repeat of the count/gap pattern; prime to avoid aliasing with hours/days
_MEAN_GAP_MS = 5_000
_MIN_GAP_MS = 4_000
_MAX_GAP_MS = 6_000
_MAX_TX = 10  # per ledger; tx_index fits in 4 bits of a key
_MAX_OPS = 4  # per transaction; op_index fits in 2 bits of a key
_ACCOUNT_POOL = 5_000
MAX_AMOUNT = 10**12

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


class LedgerPattern:
    """The tables one seed draws: one period's gaps and counts with their prefix sums, and the content keys.

    Positions ``i`` below are positions within the period (``sequence % PERIOD``).
    """

    def __init__(self, seed: int) -> None:
        stream = SplitMix64(seed)

        gaps = [_MEAN_GAP_MS + stream.next() % 2001 - 1000 for _ in range(PERIOD)]
        _balance_gaps(gaps)
        offsets = [0] * (PERIOD + 1)
        for i, gap in enumerate(gaps):
            offsets[i + 1] = offsets[i] + gap
        self.period_ms = offsets[PERIOD]
        self.offsets = offsets  # ms from the period's start to the close of position i; PERIOD + 1 entries
        self.offset_deltas = tuple(timedelta(milliseconds=ms) for ms in offsets[:PERIOD])

        ops_choice = _weighted_table(_OPS_PER_TX_WEIGHTS)
        tx_ops: list[tuple[int, ...]] = []
        for _ in range(PERIOD):
            # Popcount of 10 random bits: binomial 0..10, mean 5, like bursty traffic.
            tx_count = (stream.next() & 0x3FF).bit_count()
            tx_ops.append(tuple(ops_choice[stream.next() & 0xFF] for _ in range(tx_count)))
        self.tx_ops = tuple(tx_ops)  # operations of each transaction, per position
        self.op_counts = tuple(sum(ops) for ops in tx_ops)
        # (tx_index, op_index, key suffix) per position, so the operations loop is flat.
        self.op_slots = tuple(
            tuple((tx, op, (tx << 2) | op) for tx, n in enumerate(ops) for op in range(n))
            for ops in tx_ops
        )
        self.tx_prefix = [0] * (PERIOD + 1)  # transactions (operations) of the positions before i
        self.op_prefix = [0] * (PERIOD + 1)
        for i in range(PERIOD):
            self.tx_prefix[i + 1] = self.tx_prefix[i] + len(tx_ops[i])
            self.op_prefix[i + 1] = self.op_prefix[i] + self.op_counts[i]

        self.ledger_key = stream.next()
        self.tx_key = stream.next()
        self.op_key = stream.next()
        # Odd multipliers below 2**192: x * K is a bijection that spreads a
        # 64-bit word over 256 bits, giving unique 64-hex-digit hashes cheaply.
        self.ledger_hash_mul = ((stream.next() << 128) | (stream.next() << 64) | stream.next()) | (1 << 191) | 1
        self.tx_hash_mul = ((stream.next() << 128) | (stream.next() << 64) | stream.next()) | (1 << 191) | 1
        self.accounts = _make_accounts(stream)
        self.op_types = _weighted_table(_OP_TYPE_WEIGHTS)  # 256-entry lookup tables
        self.assets = _weighted_table(_ASSET_WEIGHTS)


def count_before(prefix: list[int], sequence: int) -> int:
    """Rows of the ledgers before ``sequence``, from a per-period prefix sum (``tx_prefix``, ``op_prefix``)."""
    periods, i = divmod(sequence, PERIOD)
    return periods * prefix[PERIOD] + prefix[i]


def _weighted_table(weights: tuple[tuple[Any, int], ...], size: int = 256) -> tuple[Any, ...]:
    """Lookup table so a weighted choice costs one index with 8 random bits."""
    total = sum(weight for _, weight in weights)
    table: list[Any] = []
    for value, weight in weights:
        table.extend([value] * round(weight * size / total))
    table = (table + [weights[0][0]] * size)[:size]
    return tuple(table)


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


def _make_accounts(stream: SplitMix64) -> tuple[str, ...]:
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
