"""Policies validate themselves on construction with a clear ValueError."""

import numpy as np
import pytest

from bandits.policies import BetaArms, FixedSplit, ThompsonSampling, cap_arms


@pytest.mark.parametrize(
    ("alpha", "beta", "match"),
    [
        ([1, 2], [1], "same"),
        ([], [], "non-zero"),
        ([0, 1], [1, 1], "positive"),
        ([[1, 1]], [[1, 1]], "1-D"),
    ],
)
def test_beta_arms_reject_bad_parameters(alpha, beta, match):
    with pytest.raises(ValueError, match=match):
        BetaArms(np.array(alpha, dtype=float), np.array(beta, dtype=float))


def test_counts_must_be_consistent():
    with pytest.raises(ValueError, match="successes ≤ trials"):
        BetaArms.from_counts(successes=[5], trials=[3])
    with pytest.raises(ValueError, match="successes ≤ trials"):
        BetaArms.from_counts(successes=[-1], trials=[3])


@pytest.mark.parametrize("weights", [(0.5, 0.6), (-0.5, 1.5), ()])
def test_fixed_split_rejects_bad_weights(weights):
    with pytest.raises(ValueError):
        FixedSplit(weights)


def test_thompson_rejects_bad_settings():
    with pytest.raises(ValueError, match="min_weight"):
        ThompsonSampling(min_weight=1.0)
    arms = BetaArms.from_counts([1, 1, 1, 1], [2, 2, 2, 2])
    with pytest.raises(ValueError, match="leaves nothing"):
        ThompsonSampling(min_weight=0.25).weights_for(arms)


@pytest.mark.parametrize(
    ("capped", "share"),
    [([True, True], 0.01), ([True], 0.01), ([True, False], -0.1), ([True, False], 1.5)],
)
def test_cap_arms_refuses_capping_every_arm_or_a_share_outside_0_1(capped, share):
    with pytest.raises(ValueError, match="Cap some of the arms"):
        cap_arms(np.array([[0.5, 0.5]]), np.array(capped), share)
