"""Deterministic bucketing: the same (seed, unit) lands in the same bucket on every node,
process and restart.

BLAKE2b (in the standard library, implemented in C) keyed by nothing and fed "seed:unit" gives
64 well-mixed bits; Python's own `hash()` is salted per process and must never be used.
"""

from bisect import bisect_right
from hashlib import blake2b

_SCALE = float(2**64)


def bucket(seed: int, unit_id: str) -> float:
    """A number in [0, 1), uniform over units, fixed for (seed, unit_id)."""
    digest = blake2b(f"{seed}:{unit_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def pick(cumulative, position: float) -> int:
    """The arm whose slice of [0, 1) contains `position`, given cumulative weights."""
    index = bisect_right(cumulative, position)
    return min(index, len(cumulative) - 1)  # guards a last cumulative weight of 0.999999…
