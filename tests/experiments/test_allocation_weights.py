"""How weights are chosen, given counts: the policy an allocation names, the arms still short
of units, the learned prior as pseudo-observations, and the guardrails' exclusions and caps."""

import numpy as np
import pytest

from bandits.policies import FixedSplit, ThompsonSampling
from experiments.allocation.weights import (
    TRIPPED_ARM_SHARE,
    allocation_policy,
    choose_weights,
    short_arms,
    with_learned_prior,
)
from experiments.storage.tables import Experiment, Variant

SUCCESSES = np.array([[10.0, 30.0, 20.0], [5.0, 5.0, 5.0]])
TRIALS = np.array([[100.0, 100.0, 100.0], [50.0, 50.0, 50.0]])
SEGMENTS, VARIANTS = ["newcomers", "other"], ["a", "b", "c"]


def experiment(allocation: str) -> Experiment:
    found = Experiment(allocation=allocation, min_weight=0.05)
    found.variants = [
        Variant(key=k, weight=w) for k, w in zip(VARIANTS, (0.2, 0.3, 0.5), strict=True)
    ]
    return found


def test_the_allocation_names_the_policy():
    assert allocation_policy(experiment("thompson")) == ThompsonSampling(min_weight=0.05)
    assert allocation_policy(experiment("fixed")) == FixedSplit((0.2, 0.3, 0.5))


def test_arms_short_of_units_are_named_with_their_units():
    assert short_arms(TRIALS, VARIANTS, 150) == []
    assert short_arms(TRIALS, VARIANTS, 151) == [("a", 150), ("b", 150), ("c", 150)]


def test_the_learned_prior_adds_pseudo_observations_per_segment():
    priors = {"segments": {"all": {"arms": {"a": [1.0, 9.0], "b": [2.0, 8.0], "c": [3.0, 7.0]}}}}
    successes, trials = with_learned_prior(SUCCESSES, TRIALS, priors, SEGMENTS, VARIANTS)
    assert successes.tolist() == [[11.0, 32.0, 23.0], [6.0, 7.0, 8.0]]
    assert trials.tolist() == [[110.0, 110.0, 110.0], [60.0, 60.0, 60.0]]
    assert SUCCESSES[0, 0] == 10.0  # the counts given are left alone


def test_weights_per_segment_floor_every_arm_and_sum_to_one():
    weights = choose_weights(SUCCESSES, TRIALS, SEGMENTS, VARIANTS, ThompsonSampling(0.05))
    assert list(weights) == SEGMENTS
    for row in weights.values():
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-5)
        assert min(row.values()) >= 0.05 - 1e-6
    assert max(weights["newcomers"], key=weights["newcomers"].get) == "b"


def test_a_conclusive_harm_zeroes_an_arm_and_a_trip_holds_one_at_the_floor():
    weights = choose_weights(
        SUCCESSES,
        TRIALS,
        SEGMENTS,
        VARIANTS,
        ThompsonSampling(0.001),
        excluded=np.array([False, True, False]),
        held=np.array([False, False, True]),
    )
    for row in weights.values():
        assert row["b"] == 0.0
        assert row["c"] <= TRIPPED_ARM_SHARE
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-5)
