"""Always-valid p-values and the e-BH step-up: hand-computed cases, and seeded simulations of
A/A experiments looked at daily and of publications full of null comparisons."""

import math

import numpy as np
import pytest
from scipy import special

from analysis.contrasts import beta_log_moments
from analysis.discovery import always_valid_p, discoveries


def test_always_valid_p_matches_a_hand_computed_case():
    # θ̂ = 0.2, sd = 0.05, τ = 0.1: V = 0.0025, τ² = 0.01;
    # log E = ½·log(0.0025 / 0.0125) + 0.04·0.01 / (2·0.0025·0.0125) = −0.804719 + 6.4
    assert always_valid_p(0.2, 0.05, [0.1]) == pytest.approx(math.exp(-5.595281), rel=1e-6)
    # τ = 0.4 too: log E = ½·log(0.0025 / 0.1625) + 0.04·0.16 / (2·0.0025·0.1625)
    #   = −2.087194 + 7.876923 = 5.789729; the mixture's E is the mean of the two.
    mixed = (math.exp(5.595281) + math.exp(5.789729)) / 2
    assert always_valid_p(0.2, 0.05, [0.1, 0.4]) == pytest.approx(1 / mixed, rel=1e-6)
    # No effect at all, or too little data to tell: no evidence (p = 1), never above it.
    assert always_valid_p(0.0, 0.05) == 1.0
    assert always_valid_p(0.3, 2.0) == 1.0
    assert always_valid_p(-0.2, 0.05) == always_valid_p(0.2, 0.05)
    with pytest.raises(ValueError):
        always_valid_p(0.1, 0.0)


@pytest.mark.parametrize(
    ("p_values", "expected"),
    [
        # m = 5: 0.001 ≤ 0.05·1/5; 0.03 > 0.05·2/5 and 0.04 > 0.05·3/5.
        ([0.001, 0.04, 0.03, 0.5, None], [True, False, False, False, False]),
        # Step-up: the largest k with p_(k) ≤ 0.05·k/4 is 4, so all four.
        ([0.02, 0.03, 0.035, 0.04], [True, True, True, True]),
        ([0.2, None], [False, False]),
        ([], []),
    ],
)
def test_discoveries_are_the_benjamini_hochberg_step_up(p_values, expected):
    assert discoveries(p_values, 0.05).tolist() == expected


def daily_log_lifts(rng, experiments, days, per_day, rates):
    """θ's posterior mean and sd after each day (experiments × days) of `per_day` units an
    arm at true `rates` (control, variant), as a publication reads a pooled comparison."""
    conversions = rng.binomial(per_day, rates, size=(experiments, days, 2)).cumsum(axis=1)
    units = per_day * np.arange(1, days + 1)[None, :, None]
    mean, variance = beta_log_moments(1 + conversions, 1 + units - conversions)
    return mean[..., 1] - mean[..., 0], np.sqrt(variance.sum(axis=-1))


def test_an_aa_experiment_looked_at_daily_rarely_shows_a_win():
    """28 daily looks at 1,000 A/A experiments (5%, 200 units an arm a day): P(better) ≥ 0.95
    fires at some look in about a fifth of them; a discovery (here the only comparison) in
    under 5%."""
    theta, sd = daily_log_lifts(np.random.default_rng(28), 1_000, 28, 200, [0.05, 0.05])
    prob_better = special.ndtr(theta / sd)  # the Normal approximation of P(beat control)
    old = (prob_better >= 0.95).any(axis=1).mean()
    p = always_valid_p(theta, sd)
    wins = (p <= 0.05) & (prob_better >= 0.95)
    assert old > 0.18
    assert wins.any(axis=1).mean() < 0.05
    assert (prob_better[:, -1] >= 0.95).mean() == pytest.approx(0.05, abs=0.015)


def test_publications_of_null_comparisons_rarely_publish_any_win_or_loss():
    """500 publications of 24 null comparisons each (4 segments × 3 metrics × 2 variants,
    taken as independent): P(better) ≥ 0.95 or ≤ 0.05 publishes one in ten; the discoveries
    at a 5% false-discovery rate are wrong in under 5% of publications."""
    rng = np.random.default_rng(24)
    theta, sd = daily_log_lifts(rng, 500 * 24, 1, 5_000, [0.03, 0.03])
    prob_better = special.ndtr(theta / sd).reshape(500, 24)
    p = always_valid_p(theta, sd).reshape(500, 24)
    old = ((prob_better >= 0.95) | (prob_better <= 0.05)).mean()
    found = np.array([discoveries(row, 0.05) for row in p])
    assert old == pytest.approx(0.10, abs=0.01)
    assert found.any(axis=1).mean() < 0.05
