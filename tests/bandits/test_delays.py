"""Delay-aware posteriors: the delay distribution under truncation, and fractional failures."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import optimize

from bandits.delays import DelayDistribution, delay_aware_arms, failure_shares
from bandits.policies import BetaArms, prob_best
from tests.utils.delays import DelayedUnits, aa_units, truncated_exponential_cdf

HOUR = 3600.0
WINDOW = 72 * HOUR


def test_golden_numbers():
    delay = DelayDistribution.fit(
        [3600, 7200, 7200, 20000],
        [10000, 30000, 90000, 300000],
        WINDOW,
        prior_mean_seconds=6 * HOUR,
        prior_weight=4,
    )
    cdf = delay.cdf([0, 3600, 7200, 10800, 86400, 300000])
    assert np.round(cdf, 5).tolist() == [0.0, 0.18787, 0.47507, 0.53007, 0.99085, 1.0]
    arms = delay_aware_arms([[100, 200], [150, 50]], [[3, 5], [6, 1]], [3600, 4 * 86400], delay)
    assert np.round(arms.alpha, 5).tolist() == [9.0, 8.0]
    # The young cohort's silent units count 0.18023 of a failure each: G(1 h) = 0.18787 at the
    # pooled maximum-likelihood rate 0.0496 (w = G, before, gave 214.22346 and 77.05338).
    assert np.round(arms.beta, 5).tolist() == [213.48253, 75.95344]


def test_without_data_it_is_the_truncated_exponential_prior():
    delay = DelayDistribution.fit([], [], WINDOW, prior_mean_seconds=6 * HOUR)
    ages = np.array([0, HOUR, 10 * HOUR, WINDOW, 2 * WINDOW])
    expected = (1 - np.exp(-ages.clip(max=WINDOW) / (6 * HOUR))) / (1 - np.exp(-12))
    assert delay.cdf(ages) == pytest.approx(expected)
    assert delay.cdf([WINDOW])[0] == pytest.approx(1.0)


def test_closed_windows_give_the_empirical_cdf():
    rng = np.random.default_rng(3)
    delays = rng.exponential(8 * HOUR, 500).clip(max=WINDOW)
    delay = DelayDistribution.fit(delays, np.full(500, 2 * WINDOW), WINDOW, prior_weight=0)
    grid = np.linspace(0, WINDOW, 50)
    empirical = np.searchsorted(np.sort(delays), grid, side="right") / 500
    assert delay.cdf(grid) == pytest.approx(empirical)


def test_truncation_is_corrected_where_the_plain_cdf_is_biased():
    rng = np.random.default_rng(11)
    n = 20_000
    mean = 10 * HOUR
    truth = lambda t: -np.expm1(-t / mean) / -np.expm1(-WINDOW / mean)  # noqa: E731
    u = rng.random(n)
    delays = -mean * np.log1p(-u * -np.expm1(-WINDOW / mean))
    ages = rng.uniform(0, 36 * HOUR, n)  # early on: every window still open
    seen = delays <= ages
    delay = DelayDistribution.fit(delays[seen], ages[seen], WINDOW, prior_weight=0)
    grid = np.array([2, 6, 12, 24]) * HOUR
    plain = np.searchsorted(np.sort(delays[seen]), grid, side="right") / seen.sum()
    # Within 0.04: delays beyond the oldest unit (36 h, 3% of the mass here) cannot be seen
    # yet, so the estimate is of G given a delay under 36 h; the prior covers that tail.
    assert np.max(np.abs(delay.cdf(grid) - truth(grid))) < 0.04
    assert np.max(plain - truth(grid)) > 0.10  # the plain CDF of seen delays runs short


def test_closed_windows_make_the_usual_beta_posterior():
    delay = DelayDistribution.fit([HOUR], [WINDOW], WINDOW)
    arms = delay_aware_arms([[100, 50], [80, 20]], [[4, 1], [2, 3]], [WINDOW, 3 * WINDOW], delay)
    usual = BetaArms.from_counts([5, 5], [150, 100])
    assert arms.alpha == pytest.approx(usual.alpha)
    assert arms.beta == pytest.approx(usual.beta)


def test_units_too_young_to_have_converted_are_not_failures():
    delay = DelayDistribution.fit([], [], WINDOW)
    arms = delay_aware_arms([[1000]], [[0]], [0.0], delay)
    assert (arms.alpha[0], arms.beta[0]) == (1.0, 1.0)
    older = delay_aware_arms([[1000]], [[0]], [12 * HOUR], delay)
    assert 1.0 < older.beta[0] < 1001.0  # part of a failure each, growing with age


@pytest.mark.parametrize(
    ("units", "conversions", "ages", "message"),
    [
        ([[10]], [[11]], [HOUR], "0 ≤ conversions ≤ units"),
        ([[10]], [[-1]], [HOUR], "0 ≤ conversions ≤ units"),
        ([10], [1], [HOUR], "shape"),
        ([[10, 5]], [[1, 1]], [HOUR], "one entry per cohort"),
    ],
)
def test_invalid_counts_are_refused(units, conversions, ages, message):
    delay = DelayDistribution.fit([], [], WINDOW)
    with pytest.raises(ValueError, match=message):
        delay_aware_arms(units, conversions, ages, delay)


def test_invalid_age_spreads_are_refused():
    delay = DelayDistribution.fit([], [], WINDOW)
    with pytest.raises(ValueError, match="one entry per cohort"):
        delay_aware_arms([[10, 5]], [[1, 1]], [HOUR, HOUR], delay, age_half_widths=[HOUR])
    with pytest.raises(ValueError, match="negative"):
        delay_aware_arms([[10]], [[1]], [HOUR], delay, age_half_widths=[-1.0])
    with pytest.raises(ValueError, match="oldest"):
        delay.mean_cdf([2 * HOUR], [HOUR])


def test_invalid_delay_inputs_are_refused():
    with pytest.raises(ValueError, match="window"):
        DelayDistribution.fit([], [], 0)
    with pytest.raises(ValueError, match="age"):
        DelayDistribution.fit([5 * HOUR], [HOUR], WINDOW)  # seen before it could have been
    with pytest.raises(ValueError, match="prior"):
        DelayDistribution.fit([], [], WINDOW, prior_mean_seconds=-1)


def fitted_g(units: DelayedUnits, chosen: np.ndarray, at: float) -> float:
    """G(at) fitted from the chosen ones of the units' conversions seen by the end."""
    seen = np.flatnonzero(units.seen(units.hours))[chosen]
    ages = (units.hours - units.assigned_at[seen]) * HOUR
    delay = DelayDistribution.fit(units.delay[seen] * HOUR, ages, WINDOW)
    return float(delay.cdf([at])[0])


def latest_conversions(units: DelayedUnits, n: int) -> np.ndarray:
    """The sample reweights read before: the last n conversions to arrive."""
    seen = units.seen(units.hours)
    return np.argsort(units.assigned_at[seen] + units.delay[seen])[-n:]


def random_units(units: DelayedUnits, n: int, rng) -> np.ndarray:
    """The sample reweights read now: the conversions of a random share of the units, chosen
    at assignment (by their ids' random digits), about n of them."""
    seen = int(units.seen(units.hours).sum())
    return rng.random(seen) < n / seen


@pytest.mark.parametrize(("per_day", "latest_reads"), [(10_000, 0.44), (20_000, 0.09)])
def test_g_is_fitted_from_a_random_share_of_units_not_the_latest_conversions(per_day, latest_reads):
    """A week of conversions with exponential delays of mean 12 h, 20,000 of them fitted.
    The latest ones are chosen on conversion time: a unit assigned days ago is among them only
    if it converted late, a truncation from the left the estimator does not correct for."""
    rng = np.random.default_rng(5)
    units = aa_units(
        rng,
        days=7,
        units_per_day=per_day,
        rate=1.0,
        mean_delay_hours=12,
        window_hours=72,
        favoured_share_last_day=0.5,
    )
    truth = truncated_exponential_cdf(12.0, mean=12.0, window=72.0)
    assert round(truth, 3) == 0.634
    assert fitted_g(units, latest_conversions(units, 20_000), 12 * HOUR) == pytest.approx(
        latest_reads, abs=0.02
    )
    assert fitted_g(units, random_units(units, 20_000, rng), 12 * HOUR) == pytest.approx(
        truth, abs=0.01
    )


def aa_prob_best(units: DelayedUnits, chosen: np.ndarray) -> float:
    """P(best) of arm 0 as a reweight gives it: hourly cohorts at their mean ages, G fitted from
    the chosen conversions."""
    seen = units.seen(units.hours)
    picked = np.flatnonzero(seen)[chosen]
    ages = (units.hours - units.assigned_at) * HOUR
    delay = DelayDistribution.fit(units.delay[picked] * HOUR, ages[picked], WINDOW)
    cohort = units.assigned_at.astype(int)
    shape = (2, cohort.max() + 1)
    counts = np.zeros(shape)
    conversions = np.zeros(shape)
    np.add.at(counts, (units.arm, cohort), 1)
    np.add.at(conversions, (units.arm, cohort), seen)
    mean_ages = np.bincount(cohort, weights=ages) / np.bincount(cohort)
    return float(prob_best(delay_aware_arms(counts, conversions, mean_ages, delay))[0])


def complete_prob_best(units: DelayedUnits) -> float:
    """P(best) of arm 0 from every conversion its units will make: what waiting would say."""
    conversions = np.bincount(units.arm, weights=units.converts)
    return float(prob_best(BetaArms.from_counts(conversions, np.bincount(units.arm)))[0])


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.05, 0.20])
def test_an_aa_bandit_stays_even_after_favouring_an_arm_lately(rate):
    """Two equal arms, 3,000 conversions a day for three days, arm 0 given 80% of the last
    day; 3,000 conversions fitted (the proportions of 20,000 at 20,000 a day). From the latest
    conversions, arm 0 looked best and would get yet more units. Each P(best) is also set
    against the one the complete data (every conversion to come) give, which takes out most
    of the A/A test's own noise: counting a silent unit as G(age) of a failure took 0.03
    (at 5%) and 0.16 (at 20%, median 0.20) off the favoured arm's P(best)."""
    latest, random, paired = [], [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        units = aa_units(
            rng,
            days=3,
            units_per_day=3_000 / rate,
            rate=rate,
            mean_delay_hours=12,
            window_hours=72,
            favoured_share_last_day=0.8,
        )
        latest.append(aa_prob_best(units, latest_conversions(units, 3_000)))
        random.append(aa_prob_best(units, random_units(units, 3_000, rng)))
        paired.append(random[-1] - complete_prob_best(units))
    assert np.median(latest) > 0.95
    assert 0.35 < np.median(random) < 0.65
    assert abs(np.mean(paired)) < 0.04


def test_the_mean_of_g_over_a_cohorts_ages_is_exact():
    rng = np.random.default_rng(2)
    delays = rng.exponential(8 * HOUR, 300).clip(max=WINDOW)
    delay = DelayDistribution.fit(delays, rng.uniform(delays, 2 * WINDOW), WINDOW)
    youngest = np.array([0.0, HOUR, 20 * HOUR, 70 * HOUR, 80 * HOUR, 5 * HOUR])
    oldest = np.array([24 * HOUR, 1.5 * HOUR, 44 * HOUR, 90 * HOUR, 90 * HOUR, 5 * HOUR])
    for low, high, mean in zip(youngest, oldest, delay.mean_cdf(youngest, oldest), strict=True):
        grid = np.linspace(low, high, 200_001)
        assert mean == pytest.approx(delay.cdf(grid).mean(), abs=1e-4)
    assert delay.mean_cdf([5 * HOUR], [5 * HOUR]) == pytest.approx(delay.cdf([5 * HOUR]))
    prior_only = DelayDistribution.fit([], [], WINDOW, prior_mean_seconds=12 * HOUR)
    expected = 1 - (1 - np.exp(-2)) / 2  # exponential G averaged over 0 to 24 h
    assert prior_only.mean_cdf([0.0], [24 * HOUR])[0] == pytest.approx(
        expected / (1 - np.exp(-6)), abs=1e-3
    )


def test_silent_units_count_so_that_the_posterior_peaks_at_the_exact_maximum_likelihood():
    """One arm, cohorts of different ages: the posterior's mode is where the exact likelihood,
    p^conversions · Π (1 − p·G)^silent, peaks; with w = G it was below."""
    units = np.array([[4_000.0, 4_000.0, 4_000.0]])
    conversions = np.array([[200.0, 600.0, 900.0]])
    arrived = np.array([0.25, 0.7, 1.0])
    shares = failure_shares(units, conversions, arrived)
    silent = units - conversions
    mode = conversions.sum() / (conversions.sum() + (silent * shares).sum())
    score = lambda p: conversions.sum() / p - (silent * arrived / (1 - p * arrived)).sum()  # noqa: E731
    assert mode == pytest.approx(optimize.brentq(score, 1e-6, 0.99), rel=1e-9)
    plain = conversions.sum() / (conversions.sum() + (silent * arrived).sum())
    assert plain < 0.97 * mode
    assert failure_shares(units, np.zeros_like(units), arrived) == pytest.approx(
        np.broadcast_to(arrived, units.shape)
    )  # nothing converted: p̂ = 0, w = G


def test_a_cohorts_ages_are_averaged_over_not_taken_at_their_mean():
    """Units assigned evenly over a day, 5% converting after exponential delays of mean 12 h,
    G known: at the cohort's mean age the rate reads 10% low."""
    rng = np.random.default_rng(4)
    units = aa_units(
        rng,
        days=1,
        units_per_day=200_000,
        rate=0.05,
        mean_delay_hours=12,
        window_hours=72,
        favoured_share_last_day=0.5,
    )
    truth = DelayDistribution.fit([], [], WINDOW, prior_mean_seconds=12 * HOUR)
    seen = units.seen(units.hours)
    counts, conversions = [[units.assigned_at.size]], [[seen.sum()]]
    at_mean = delay_aware_arms(counts, conversions, [12 * HOUR], truth).mean[0]
    spread = delay_aware_arms(counts, conversions, [12 * HOUR], truth, age_half_widths=[12 * HOUR])
    rate = units.converts.mean()  # every conversion to come, seen or not
    assert at_mean / rate - 1 == pytest.approx(-0.10, abs=0.01)
    assert spread.mean[0] / rate - 1 == pytest.approx(0.0, abs=0.005)


def test_g_is_not_identified_beyond_the_oldest_units_age():
    """A day into delays of mean 12 h, no delay longer than a day can have been seen: the fit
    is G given a delay within a day, too high by 1/G(24 h) at every age. Rates read low, by
    the same factor for an arm of young units as for one of older units."""
    rng = np.random.default_rng(6)
    units = aa_units(
        rng,
        days=1,
        units_per_day=400_000,
        rate=0.05,
        mean_delay_hours=12,
        window_hours=72,
        favoured_share_last_day=0.5,
    )
    # Arm 0 gets 80% of the last 12 hours, arm 1 80% of the 12 before.
    late = units.assigned_at >= 12.0
    units = replace(units, arm=np.where(rng.random(late.size) < 0.8, ~late, late).astype(int))
    seen = units.seen(24.0)
    ages = (24.0 - units.assigned_at) * HOUR
    fitted = DelayDistribution.fit(units.delay[seen] * HOUR, ages[seen], WINDOW)
    within_a_day = truncated_exponential_cdf(24.0, mean=12.0, window=72.0)
    assert fitted.cdf([24 * HOUR])[0] == pytest.approx(1.0, abs=0.002)
    assert fitted.cdf([6 * HOUR])[0] == pytest.approx(
        truncated_exponential_cdf(6.0, mean=12.0, window=72.0) / within_a_day, abs=0.01
    )
    cohort = units.assigned_at.astype(int)
    counts, conversions = np.zeros((2, 24)), np.zeros((2, 24))
    np.add.at(counts, (units.arm, cohort), 1)
    np.add.at(conversions, (units.arm, cohort), seen)
    mean_ages = (23.5 - np.arange(24)) * HOUR
    half_widths = np.full(24, HOUR / 2)
    truth = DelayDistribution.fit([], [], WINDOW, prior_mean_seconds=12 * HOUR)
    arms = delay_aware_arms(counts, conversions, mean_ages, fitted, age_half_widths=half_widths)
    known = delay_aware_arms(counts, conversions, mean_ages, truth, age_half_widths=half_widths)
    low = arms.mean / known.mean - 1  # against the same data with G known
    assert low == pytest.approx(-(1 - within_a_day), abs=0.015)  # −13%
    assert abs(low[0] - low[1]) < 0.01


def test_failure_shares_of_degenerate_cohorts():
    every_one_converted = failure_shares([[10.0, 5.0]], [[10.0, 5.0]], [0.5, 1.0])
    assert every_one_converted[0, 0] < 1e-6 and every_one_converted[0, 1] == 1.0  # p̂ = 1
    none_could_have = failure_shares([[10.0]], [[2.0]], [0.0])  # converted at once, none yet
    assert none_could_have.tolist() == [[0.0]]
    closed = failure_shares([[10.0, 20.0]], [[3.0, 4.0]], [1.0, 1.0])
    assert closed.tolist() == [[1.0, 1.0]]
    assert failure_shares(np.zeros((2, 0)), np.zeros((2, 0)), np.zeros(0)).shape == (2, 0)
