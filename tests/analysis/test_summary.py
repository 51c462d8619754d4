"""Per-arm summaries against exact values (closed forms, the reference integrators),
simulation (probabilities, lift intervals, interval coverage) and golden numbers."""

import itertools

import numpy as np
import pytest
from scipy import special

from analysis.conjugate import prob_beat_closed_form
from analysis.stratified import stratified_draws
from analysis.summary import (
    Guardrail,
    Prior,
    prob_worse_beta,
    summarize_binary,
    summarize_continuous,
)
from bandits.policies import BetaArms, prob_best
from tests.utils.draws import log_beta_draws


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


@pytest.mark.parametrize(
    ("units", "conversions", "stratify"),
    [
        ([200, 200], [2, 3], False),  # few conversions: the ratio's distribution, inverted
        ([2000, 2000], [80, 100], False),  # Cornish-Fisher
        ([[100, 100], [100, 100]], [[1, 2], [2, 2]], True),  # the stratified draws
    ],
)
def test_lift_median_is_the_median_of_simulated_lifts(units, conversions, stratify):
    """The lift to quote is the posterior median: with 2/200 against 3/200 the mean
    E[p]·E[1/p0] − 1 reads +99% (its mean is right, but the right tail makes it), the median
    +37%. Checked against 2M draws: within the order statistics that bound the simulated
    median at 3 standard errors of the simulation."""
    (_, arm) = summarize_binary(units, conversions, control=0, stratify=stratify)
    rng = np.random.default_rng(3)
    draws = 2_000_000
    n, c = np.atleast_2d(units), np.atleast_2d(conversions)
    if stratify:
        ratio = stratified_draws(n, c, rng, draws)
    else:
        ratio = rng.beta(1 + c[0], 1 + n[0] - c[0], size=(draws, 2))
    lifts = ratio[:, 1] / ratio[:, 0] - 1
    spread = 3 * 0.5 * np.sqrt(1 / draws)
    low, high = np.quantile(lifts, [0.5 - spread, 0.5 + spread])
    assert low <= arm.lift.median <= high, (arm.lift.median, low, high)
    assert arm.lift.low < arm.lift.median < arm.lift.high


def test_lift_intervals_cover_the_true_lift_95_percent_of_the_time():
    """400 simulated experiments, true rates drawn around 8%: the 95% lift interval covers."""
    rng = np.random.default_rng(2026)
    covered = 0
    runs = 400
    for _ in range(runs):
        rates = rng.uniform(0.04, 0.12, size=2)
        n = rng.integers(300, 3000)
        conversions = rng.binomial(n, rates)
        (_, arm) = summarize_binary([n, n], conversions, control=0)
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


# Beta posteriors whose density is unbounded at 0 or at 1 (a parameter below 1), as learned
# priors make them (alpha = baseline rate × prior units), beside ordinary ones. The smallest
# alpha a learned prior reaches is 1e-4 (a baseline clamped at 1e-4, one prior unit).
BETAS = [
    (1e-4, 2000.0),
    (0.05, 40.0),
    (0.5, 99.5),
    (0.5, 399.5),
    (0.5, 2099.5),
    (10.5, 2089.5),
    (0.3, 0.3),
    (2.0, 0.4),
    (1.0, 1.0),
    (40.0, 3.0),
]
DRAWS = 1_000_000


@pytest.mark.slow
def test_comparisons_match_simulation_for_parameters_below_one():
    """P(beat control), P(best) and the expected loss of both arms, for every pair of BETAS
    against 1M exact draws of each: every probability within 5 simulation standard errors
    (2.5e-3 at most), every loss within 5 of its own standard errors (and 1e-9, where a loss
    too rare to be drawn has no standard error)."""
    rng = np.random.default_rng(13)
    logs = [log_beta_draws(a, b, rng, DRAWS) for a, b in BETAS]
    rates = [np.exp(found) for found in logs]
    errors = {"beat": [], "best": [], "loss": []}
    misses = []
    for (j, (a0, b0)), (i, (a, b)) in itertools.combinations(enumerate(BETAS), 2):
        prior = Prior(np.array([a0, a]), np.array([b0, b]))
        (control, arm) = summarize_binary([0, 0], [0, 0], control=0, prior=prior)
        wins = np.mean(logs[i] > logs[j])
        se = max(np.sqrt(wins * (1 - wins) / DRAWS), 1 / DRAWS)
        gap = rates[j] - rates[i]
        shortfalls = [np.maximum(-gap, 0.0), np.maximum(gap, 0.0)]  # max − p of each arm
        checks = [
            ("beat", arm.prob_beat_control, wins, 5 * se),
            ("best", arm.prob_best, wins, 5 * se),
            ("best", control.prob_best, 1 - wins, 5 * se),
        ]
        for ours, shortfall in zip((control, arm), shortfalls, strict=True):
            tolerance = 5 * shortfall.std() / np.sqrt(DRAWS) + 1e-9
            checks.append(("loss", ours.expected_loss, shortfall.mean(), tolerance))
        for name, ours, theirs, tolerance in checks:
            error = 1.0 if ours is None else abs(ours - theirs)  # None: no answer at all
            errors[name].append(error)
            if error > tolerance:
                misses.append((name, BETAS[i], BETAS[j], ours, theirs))
    largest = {name: max(found) for name, found in errors.items()}
    assert not misses, (largest, misses[:5])


def test_prob_best_of_three_arms_below_one_matches_simulation():
    rng = np.random.default_rng(21)
    alpha, beta = np.array([0.5, 0.3, 2.5]), np.array([99.5, 50.0, 400.0])
    logs = np.column_stack(
        [log_beta_draws(a, b, rng, DRAWS) for a, b in zip(alpha, beta, strict=True)]
    )
    simulated = np.bincount(np.argmax(logs, axis=1), minlength=3) / DRAWS
    summary = summarize_binary([0, 0, 0], [0, 0, 0], control=0, prior=Prior(alpha, beta))
    assert [s.prob_best for s in summary] == pytest.approx(simulated, abs=2.5e-3)  # 5 s.e.


def test_the_issues_cases_with_a_prior_below_one():
    """Prior Beta(0.5, 99.5): control 10/2000, variant 0/300 beats it with probability 0.0585
    (4M-draw simulation); two arms with 0/2000 each are even."""
    prior = Prior(0.5, 99.5)
    (_, arm) = summarize_binary([2000, 300], [10, 0], control=0, prior=prior)
    assert arm.prob_beat_control == pytest.approx(0.0585, abs=0.001)
    (control, arm) = summarize_binary([2000, 2000], [0, 0], control=0, prior=prior)
    assert arm.prob_beat_control == pytest.approx(0.5, abs=1e-6)
    assert control.prob_best == pytest.approx(0.5, abs=1e-6)
    assert control.expected_loss == pytest.approx(arm.expected_loss, rel=1e-6)


def test_a_control_whose_rate_may_be_below_1e_300_has_no_lift():
    prior = Prior(np.array([1e-4, 0.5]), np.array([1.0, 99.5]))  # a 1e-4 baseline worth 1 unit
    (_, arm) = summarize_binary([2000, 2000], [0, 3], control=0, prior=prior)
    assert arm.lift is None and "too close to zero" in arm.notes[-1]
    assert arm.prob_beat_control == pytest.approx(1.0, abs=1e-3)


def test_guardrail_probability_below_one_matches_simulation():
    rng = np.random.default_rng(17)
    for (a0, b0), (a, b), margin in [
        ((0.5, 2099.5), (2.5, 2097.5), 0.0),
        ((0.5, 2099.5), (2.5, 2097.5), 0.0005),
        ((0.3, 0.3), (2.0, 0.4), 0.1),
        ((1e-4, 2000.0), (0.05, 40.0), 0.0),
    ]:
        log_p0, log_p = log_beta_draws(a0, b0, rng, DRAWS), log_beta_draws(a, b, rng, DRAWS)
        simulated = (
            np.mean(np.exp(log_p0) - np.exp(log_p) > margin) if margin else np.mean(log_p0 > log_p)
        )
        assert prob_worse_beta(a, b, a0, b0, margin) == pytest.approx(simulated, abs=2.5e-3)


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_stratified_comparisons_are_the_simulated_ones(higher_is_better):
    """A bandit that starved three arms over four periods: P(beat control), P(best),
    P(worse by the margin), the rates' and lifts' intervals from the exact stratified
    posteriors agree with 400,000 draws of the same mixture (within 4 standard errors of the
    simulation; intervals within 1% of their width)."""
    units = np.array([[100, 100, 100, 100], [300, 60, 30, 10], [700, 20, 5, 2], [900, 5, 2, 1]])
    conversions = np.array([[6, 5, 5, 4], [18, 3, 1, 0], [42, 1, 0, 0], [54, 0, 0, 0]])
    summaries = summarize_binary(
        units,
        conversions,
        control=0,
        stratify=True,
        higher_is_better=higher_is_better,
        guardrail=Guardrail(0.002),
    )
    draws = stratified_draws(units, conversions, np.random.default_rng(8), 400_000)
    better = draws if higher_is_better else -draws
    best = np.bincount(better.argmax(axis=1), minlength=4) / draws.shape[0]
    tolerance = 4 * 0.5 / np.sqrt(draws.shape[0])
    for arm, summary in enumerate(summaries):
        assert summary.prob_best == pytest.approx(best[arm], abs=tolerance)
        low, high = np.quantile(draws[:, arm], [0.025, 0.975])
        assert [summary.rate.low, summary.rate.high] == pytest.approx(
            [low, high], abs=0.01 * (high - low)
        )
        if arm == 0:
            continue
        beat = np.mean(better[:, arm] > better[:, 0])
        worse = np.mean(better[:, 0] - better[:, arm] > 0.002)
        assert summary.prob_beat_control == pytest.approx(beat, abs=tolerance)
        assert summary.prob_worse == pytest.approx(worse, abs=tolerance)
        lift = np.quantile(draws[:, arm] / draws[:, 0] - 1, [0.025, 0.5, 0.975])
        width = lift[2] - lift[0]
        found = [summary.lift.low, summary.lift.median, summary.lift.high]
        assert found == pytest.approx(lift, abs=0.01 * width)
