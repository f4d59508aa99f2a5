"""splitmix64, the one hash every value of the synthetic ledger stream comes from.

The stream must give the same values in every process and on every Python
version, and its two generators (``rows``, pure Python, and ``columns``, numpy)
must agree bit for bit, so both hash with this one finaliser. It lives here
once, the scalar form next to its numpy twin so the two can be read against
each other. The row loops inline the scalar form (a call per value costs
more than the rest of the loop) with these same constants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["C1", "C2", "GAMMA", "MASK", "SplitMix64", "mix", "mix_array"]

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15  # the sequence's increment (2**64 / golden ratio)
C1 = 0xBF58476D1CE4E5B9
C2 = 0x94D049BB133111EB


def mix(z: int) -> int:
    """splitmix64 finaliser: a bijection on 64-bit ints, so distinct keys stay distinct."""
    z &= MASK
    z = ((z ^ (z >> 30)) * C1) & MASK
    z = ((z ^ (z >> 27)) * C2) & MASK
    return z ^ (z >> 31)


def mix_array(z: np.ndarray) -> np.ndarray:
    """``mix`` over a uint64 array: numpy's uint64 arithmetic wraps modulo 2**64 like ``& MASK``."""
    import numpy as np

    z = (z ^ (z >> np.uint64(30))) * np.uint64(C1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(C2)
    mixed: np.ndarray = z ^ (z >> np.uint64(31))
    return mixed


class SplitMix64:
    """Seeded splitmix64 sequence, for the stream's one-off per-seed tables.

    Used instead of ``random.Random`` because only its ``random()`` output is
    guaranteed stable across Python versions, and the tables must never change.
    """

    def __init__(self, seed: int) -> None:
        self._state = mix(seed ^ 0x5EED_7AB1_E000_0000)

    def next(self) -> int:
        self._state = (self._state + GAMMA) & MASK
        return mix(self._state)
