"""Deterministic bucketing: the same (seed, unit) lands in the same bucket on every node,
process and restart.

BLAKE2b (in the standard library, implemented in C) keyed by nothing and fed "seed:unit" gives
64 well-mixed bits; Python's own `hash()` is salted per process and must never be used.
"""

from hashlib import blake2b

import numpy as np

_SCALE = float(2**64)


def bucket(seed: int, unit_id: str) -> float:
    """A number in [0, 1), uniform over units, fixed for (seed, unit_id)."""
    digest = blake2b(f"{seed}:{unit_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def buckets(seed: int, unit_ids: list[str]) -> np.ndarray:
    """`bucket` for many units at once."""
    prefix = f"{seed}:"
    values = np.fromiter(
        (
            int.from_bytes(blake2b((prefix + u).encode(), digest_size=8).digest(), "big")
            for u in unit_ids
        ),
        dtype=np.uint64,
        count=len(unit_ids),
    )
    return values / _SCALE


def pick(cumulative: np.ndarray, position: float) -> int:
    """The arm whose slice of [0, 1) contains `position`, given cumulative weights."""
    index = int(np.searchsorted(cumulative, position, side="right"))
    return min(index, len(cumulative) - 1)  # guards a last cumulative weight of 0.999999…


def pick_many(cumulative: np.ndarray, positions: np.ndarray) -> np.ndarray:
    indices = np.searchsorted(cumulative, positions, side="right")
    return np.minimum(indices, len(cumulative) - 1)
