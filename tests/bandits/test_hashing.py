"""Bucketing: deterministic across processes, uniform, and the same one-by-one or in bulk."""

import subprocess
import sys

import numpy as np
from scipy import stats

from bandits.hashing import bucket, pick


def buckets(seed, units):
    return np.array([bucket(seed, u) for u in units])


# Frozen: a change here would move every running experiment's units to other variants.
GOLDEN = {
    (0, "user-1"): 0.56466,
    (42, "user-1"): 0.78307,
    (42, "user-2"): 0.59377,
    (2**31 - 1, "ü-ñîçødé"): 0.52804,
}


def test_buckets_are_golden_numbers():
    for (seed, unit), expected in GOLDEN.items():
        assert round(bucket(seed, unit), 5) == expected


def test_buckets_do_not_depend_on_the_process_or_its_hash_seed():
    code = "from bandits.hashing import bucket; print(repr(bucket(42, 'user-1')))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(salt), "PATH": ""},
        ).stdout.strip()
        for salt in (0, 1, 12345)
    }
    assert outputs == {repr(bucket(42, "user-1"))}


def test_buckets_are_uniform():
    values = buckets(123, [f"unit-{i}" for i in range(100_000)])
    counts, _ = np.histogram(values, bins=20, range=(0, 1))
    assert stats.chisquare(counts).pvalue > 0.001
    assert values.min() >= 0 and values.max() < 1


def test_different_seeds_give_independent_buckets():
    units = [f"unit-{i}" for i in range(20_000)]
    correlation = np.corrcoef(buckets(1, units), buckets(2, units))[0, 1]
    assert abs(correlation) < 0.03


def test_pick_follows_cumulative_weights():
    cumulative = [0.2, 0.5, 1.0]
    assert [pick(cumulative, x) for x in (0.0, 0.19999, 0.2, 0.49, 0.5, 0.99999)] == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    assert pick([0.5, 0.9999999], 0.99999995) == 1  # rounding never overflows
