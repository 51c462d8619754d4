"""Allocation policies: Thompson weights against exact probabilities, floors, pooled priors."""

import numpy as np
import pytest
from scipy import integrate, stats

from bandits.policies import (
    BetaArms,
    FixedSplit,
    ThompsonSampling,
    apply_floor,
    cap_arms,
    exclude_arms,
    pooled_prior,
    prob_best,
    prob_best_monte_carlo,
    segment_weights,
)
from tests.utils.draws import log_beta_draws


def exact_prob_b_beats_a(a: tuple[float, float], b: tuple[float, float]) -> float:
    """P(X_b > X_a) = ∫ f_b(x) F_a(x) dx, by numerical integration."""
    value, _ = integrate.quad(
        lambda x: stats.beta.pdf(x, *b) * stats.beta.cdf(x, *a), 0, 1, epsabs=1e-10
    )
    return value


@pytest.mark.parametrize(
    ("a", "b"),
    [((11, 91), (16, 86)), ((2, 3), (3, 2)), ((101, 901), (111, 891)), ((1, 1), (1, 1))],
)
def test_prob_best_matches_the_exact_integral_for_two_arms(a, b):
    arms = BetaArms(np.array([a[0], b[0]]), np.array([a[1], b[1]]))
    estimate = prob_best(arms)
    assert abs(estimate[1] - exact_prob_b_beats_a(a, b)) < 1e-5
    assert estimate.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("successes", "trials"),
    [
        ([30, 36, 33, 20], [300] * 4),
        ([5, 500, 7], [50, 5000, 60]),
        ([0, 0, 0], [0, 0, 0]),
        ([9000, 9050, 8990, 9010, 9100], [100_000] * 5),
    ],
    ids=["four arms", "mixed sizes", "no data", "large and close"],
)
def test_prob_best_agrees_with_monte_carlo(successes, trials):
    arms = BetaArms.from_counts(successes, trials)
    sampled = prob_best_monte_carlo(arms, np.random.default_rng(11), draws=400_000)
    assert np.abs(prob_best(arms) - sampled).max() < 0.004  # 5 standard errors of sampling


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [
        ([0.5, 10.5], [399.5, 2089.5]),  # a learned prior Beta(0.5, 99.5) and 0/300
        ([0.3, 2.0, 0.05], [0.3, 0.4, 40.0]),  # densities unbounded at 0 and at 1
        ([1e-4, 1e-4, 0.5], [2000.0, 2000.0, 2099.5]),  # a learned prior's smallest alpha
    ],
)
def test_prob_best_with_parameters_below_one_agrees_with_monte_carlo(alpha, beta):
    """Learned priors (alpha = baseline × prior units) put parameters below 1, where a Beta's
    density is unbounded at 0 or 1."""
    rng = np.random.default_rng(12)
    draws = 400_000
    logs = np.column_stack(
        [log_beta_draws(a, b, rng, draws) for a, b in zip(alpha, beta, strict=True)]
    )
    sampled = np.bincount(np.argmax(logs, axis=1), minlength=len(alpha)) / draws
    estimate = prob_best(BetaArms(np.array(alpha), np.array(beta)))
    assert np.abs(estimate - sampled).max() < 0.004  # 5 standard errors of sampling


def test_thompson_weights_are_seeded_golden_numbers():
    arms = BetaArms.from_counts(successes=[10, 15, 12], trials=[100, 100, 100])
    weights = ThompsonSampling(min_weight=0.01).weights_for(arms)
    assert [round(float(w), 5) for w in weights] == [0.10419, 0.65463, 0.24118]


def test_thompson_weights_are_deterministic():
    arms = BetaArms.from_counts(successes=[30, 36, 33, 20], trials=[300, 300, 300, 300])
    policy = ThompsonSampling(min_weight=0.0)
    assert np.array_equal(policy.weights_for(arms), policy.weights_for(arms))


def test_floor_keeps_every_arm_at_least_min_weight_and_sums_to_one():
    weights = apply_floor(np.array([0.97, 0.03, 0.0, 0.0]), 0.05)
    assert weights.sum() == pytest.approx(1.0)
    assert weights.min() == pytest.approx(0.05)
    assert list(np.argsort(-weights)[:2]) == [0, 1]
    assert apply_floor(np.array([0.25, 0.75]), 0.0).tolist() == [0.25, 0.75]


def test_a_clear_loser_gets_only_the_floor():
    arms = BetaArms.from_counts(successes=[500, 50], trials=[1000, 1000])
    weights = ThompsonSampling(min_weight=0.02).weights_for(arms)
    assert weights.tolist() == pytest.approx([0.98, 0.02])


def test_fixed_split_returns_its_weights():
    assert FixedSplit((0.2, 0.8)).weights_for().tolist() == [0.2, 0.8]


def test_pooled_prior_is_worth_the_stated_pseudo_units():
    alpha, beta = pooled_prior(
        successes=np.array([[10, 20], [30, 40]]),
        trials=np.array([[100, 100], [100, 100]]),
        pseudo_units=10,
    )
    assert (alpha + beta).tolist() == pytest.approx([12.0, 12.0])
    assert alpha.tolist() == pytest.approx([1 + 10 * 41 / 202, 1 + 10 * 61 / 202])


def test_a_cold_segment_follows_the_pooled_evidence():
    # Two warm segments both show arm 1 clearly better; a third segment has no data at all.
    successes = np.array([[50, 100], [40, 90], [0, 0]])
    trials = np.array([[1000, 1000], [1000, 1000], [0, 0]])
    weights = segment_weights(successes, trials, ThompsonSampling(0.01), pseudo_units=10)
    assert weights[2, 1] > 0.6  # leans towards the pooled winner…
    assert weights[2, 1] < weights[0, 1]  # …but less surely than the segments that saw it


def test_excluded_arms_get_zero_and_the_others_keep_their_floor():
    weights = np.array([[0.01, 0.49, 0.5], [0.98, 0.01, 0.01]])
    kept = exclude_arms(weights, np.array([False, False, True]))
    assert kept[:, 2].tolist() == [0.0, 0.0]
    assert kept.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert np.all(kept[:, :2] >= weights[:, :2])
    assert kept[0, 0] / kept[0, 1] == pytest.approx(0.01 / 0.49)
    with pytest.raises(ValueError):
        exclude_arms(weights, np.array([True, True, True]))


def test_capped_arms_keep_the_floor_and_the_rest_goes_to_the_others():
    weights = np.array([[0.2, 0.3, 0.5], [0.98, 0.01, 0.01], [0.0, 0.0, 1.0]])
    capped = cap_arms(weights, np.array([False, False, True]), 0.01)
    assert capped[:, 2].tolist() == [0.01, 0.01, 0.01]
    assert capped.sum(axis=1) == pytest.approx([1.0, 1.0, 1.0])
    # What the capped arm gave up goes to the others in proportion: 0.49 as 0.2 : 0.3.
    assert capped[0, :2] == pytest.approx([0.2 + 0.49 * 0.4, 0.3 + 0.49 * 0.6])
    # Already under the cap: unchanged. No weight elsewhere: shared equally.
    assert capped[1] == pytest.approx(weights[1])
    assert capped[2, :2] == pytest.approx([0.495, 0.495])
