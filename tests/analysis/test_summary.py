"""Per-arm summaries against exact values (closed forms, the reference integrators),
simulation (probabilities, lift intervals, interval coverage) and golden numbers."""

import itertools

import numpy as np
import pytest
from scipy import special

from analysis.conjugate import prob_beat_closed_form
from analysis.summary import (
    Guardrail,
    Prior,
    prob_worse_beta,
    summarize_binary,
    summarize_continuous,
)
from bandits.policies import BetaArms, prob_best


def two_arms(a, b, a0, b0):
    """Counts whose Beta(1, 1) posteriors are Beta(a0, b0) (control) and Beta(a, b)."""
    return [b0 + a0 - 2, a + b - 2], [a0 - 1, a - 1]


def test_prob_beat_control_matches_the_closed_form():
    grid = itertools.product([1, 2, 7, 40, 400], [3, 20, 300, 5000], [1, 5, 45, 600], [2, 25, 280])
    errors = []
    for a, b, a0, b0 in grid:
        units, conversions = two_arms(a, b, a0, b0)
        summary = summarize_binary(units, conversions, control=0)
        errors.append(abs(summary[1].prob_beat_control - prob_beat_closed_form(a, b, a0, b0)))
    assert max(errors) < 5e-4  # the contract asks 0.005


def test_prob_best_and_expected_loss_match_exact_and_simulated_values():
    units, conversions = [1000, 1000, 1000, 1000], [80, 95, 70, 88]
    summary = summarize_binary(units, conversions, control=0)
    alpha, beta = 1 + np.array(conversions), 1 + np.array(units) - conversions
    exact = prob_best(BetaArms(alpha, beta))
    assert [s.prob_best for s in summary] == pytest.approx(exact, abs=1e-5)
    rng = np.random.default_rng(11)
    draws = rng.beta(alpha, beta, size=(2_000_000, 4))
    loss = (draws.max(axis=1, keepdims=True) - draws).mean(axis=0)
    assert [s.expected_loss for s in summary] == pytest.approx(loss, abs=3e-5)


@pytest.mark.parametrize(
    "counts",
    [
        ((1000, 1000), (80, 95)),
        ((100, 90), (10, 9)),
        ((40, 45), (4, 9)),
        ((20_000, 20_000), (1000, 1100)),
        ((12, 15), (1, 0)),  # too few conversions: the exact distribution, inverted
    ],
)
def test_lift_interval_matches_simulation(counts):
    units, conversions = counts
    (control, arm) = summarize_binary(units, conversions, control=0)
    rng = np.random.default_rng(3)
    a, b = 1 + np.array(conversions), 1 + np.array(units) - conversions
    ratio = rng.beta(a[1], b[1], 2_000_000) / rng.beta(a[0], b[0], 2_000_000) - 1
    low, high = np.quantile(ratio, [0.025, 0.975])
    width = high - low
    assert arm.lift.low == pytest.approx(low, abs=0.01 * width)
    assert arm.lift.high == pytest.approx(high, abs=0.01 * width)
    assert control.lift is None


def test_lift_intervals_cover_the_true_lift_95_percent_of_the_time():
    """400 simulated experiments, true rates drawn around 8%: the 95% lift interval covers."""
    rng = np.random.default_rng(2026)
    covered = 0
    runs = 400
    for _ in range(runs):
        rates = rng.uniform(0.04, 0.12, size=2)
        n = rng.integers(300, 3000)
        conversions = rng.binomial(n, rates)
        (_, arm) = summarize_binary([n, n], conversions, control=0, rng=rng)
        covered += arm.lift.low <= rates[1] / rates[0] - 1 <= arm.lift.high
    assert 0.93 <= covered / runs <= 0.97


def test_golden_numbers():
    (control, arm) = summarize_binary([2000, 2000], [80, 100], control=0)
    assert round(arm.prob_beat_control, 5) == 0.93602
    assert (round(arm.rate.mean, 5), round(arm.rate.low, 5), round(arm.rate.high, 5)) == (
        0.05045,
        0.0413,
        0.06045,
    )
    assert (round(arm.lift.mean, 5), round(arm.lift.low, 5), round(arm.lift.high, 5)) == (
        0.26187,
        -0.06156,
        0.66493,
    )
    assert (round(arm.prob_best, 5), round(control.prob_best, 5)) == (0.93602, 0.06398)
    assert (round(arm.expected_loss, 5), round(control.expected_loss, 5)) == (0.00018, 0.01017)


def test_lower_is_better_compares_mirror_images():
    units, conversions = [1000, 1000, 1000], [30, 20, 45]
    higher = summarize_binary(units, conversions, control=0)
    lower = summarize_binary(units, conversions, control=0, higher_is_better=False)
    for h, low in zip(higher[1:], lower[1:], strict=True):
        assert low.prob_beat_control == pytest.approx(1 - h.prob_beat_control, abs=1e-4)
        assert low.rate == h.rate and low.lift == h.lift
    assert np.argmax([s.prob_best for s in lower]) == 1  # fewest events is best


def test_guardrail_probability_matches_simulation():
    rng = np.random.default_rng(8)
    for (n0, c0), (n, c), margin in [((5000, 10), (5000, 30), 0.002), ((800, 8), (800, 9), 0.0)]:
        (_, arm) = summarize_binary(
            [n0, n], [c0, c], control=0, higher_is_better=False, guardrail=Guardrail(margin)
        )
        p0 = rng.beta(1 + c0, 1 + n0 - c0, 1_000_000)
        p = rng.beta(1 + c, 1 + n - c, 1_000_000)
        assert arm.prob_worse == pytest.approx(np.mean(p - p0 > margin), abs=0.002)
    # Higher is better: worse means lower by more than the margin.
    assert prob_worse_beta(2, 98, 20, 80, 0.05) == pytest.approx(
        np.mean(rng.beta(20, 80, 1_000_000) - rng.beta(2, 98, 1_000_000) > 0.05), abs=0.002
    )


def test_stratified_comparison_is_not_fooled_by_simpsons_paradox():
    """Period 1: 50/50 at a 2% base rate; period 2: 90/10 at 10%. Within each period the arms
    convert alike; pooled, the arm the bandit favoured looks far better."""
    units = [[5000, 5000], [9000, 1000]]
    conversions = [[100, 100], [900, 100]]
    pooled = summarize_binary(units, conversions, control=1)
    stratified = summarize_binary(units, conversions, control=1, stratify=True)
    assert pooled[0].prob_beat_control > 0.999
    assert 0.2 < stratified[0].prob_beat_control < 0.8
    assert stratified[0].lift.low < 0 < stratified[0].lift.high
    assert stratified[0].rate.mean == pytest.approx(stratified[1].rate.mean, abs=0.003)


def test_continuous_summaries_are_the_normal_posteriors():
    units, totals, squares = [400, 400], [4000.0, 4800.0], [400 * 100.0 + 399 * 25, 0.0]
    squares[1] = 400 * 144.0 + 399 * 36
    control, arm = summarize_continuous(units, totals, squares, control=0, with_value=[40, 50])
    assert control.rate.mean == 10.0 and arm.rate.mean == 12.0
    assert (arm.rate.high - arm.rate.mean) == pytest.approx(1.959964 * np.sqrt(36 / 400))
    exact = special.ndtr(2.0 / np.sqrt(25 / 400 + 36 / 400))
    assert arm.prob_beat_control == pytest.approx(exact, abs=1e-5)
    assert arm.prob_best == pytest.approx(exact, abs=1e-5)
    assert arm.lift.mean == pytest.approx(0.2)
    assert arm.conversions == 50


def test_degenerate_data_give_results_with_reasons():
    (control, empty, silent) = summarize_binary([100, 0, 100], [0, 0, 0], control=0)
    assert empty.units == 0 and empty.rate.mean == 0.5
    assert "No units yet" in empty.notes[0]
    assert silent.notes[0] == "No conversions yet."
    assert silent.lift.mean is None and silent.lift.low < 0 < silent.lift.high
    assert any("control has no conversions" in n for n in silent.notes)
    assert sum(s.prob_best for s in (control, empty, silent)) == pytest.approx(1.0)
    (alone,) = summarize_binary([10], [3], control=0)
    assert alone.prob_best == 1.0 and alone.expected_loss == pytest.approx(0.0, abs=1e-12)
    (_, one) = summarize_continuous([5, 1], [5.0, 2.0], [5.0, 4.0], control=0)
    assert "Fewer than two units" in one.notes[0]


def test_informative_prior_is_used():
    (_, arm) = summarize_binary([0, 0], [0, 0], control=0, prior=Prior(8, 92, "learnings"))
    assert arm.rate.mean == pytest.approx(0.08)


def test_invalid_counts_are_refused():
    with pytest.raises(ValueError):
        summarize_binary([10, 10], [11, 0], control=0)
    with pytest.raises(ValueError):
        summarize_continuous([10], [1.0, 2.0], [1.0], control=0)
