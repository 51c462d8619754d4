"""Delayed conversions: a delay-aware bandit against waiting for windows to close and against
counting open units as failures, on the same simulated users; then the delay-aware estimate
itself, as it was (before) and as it is.

1. Regret. Four arms convert within a 72-hour window at 4%, 4.5%, 5% and 6%, with delays
   exponential (mean 6 h, the reweight cadence). 20 periods of 1,000 units, one every 6 hours;
   at each period end the bandit reweights (Thompson P(best), floor 0.01) from what has been
   observed by then.
   - delay-aware: open units count as part of a failure by G(age), G fitted from the
     conversions seen so far (corrected for truncation) with a deliberately wrong prior (mean
     18 h); G averaged over each period's ages, silent units' failure shares at the pooled
     rate (bandits/delays.py)
   - delay-aware, before: G at each period's mean age, a silent unit as G of a failure
   - wait: only units whose window has closed count
   - naive: open, unconverted units count as failures
   - instant: conversions seen at once (no delays; the floor any method can reach)
   The rate bias after 30 h mixes the estimator's with the bandit's own: an arm it starves
   keeps the low estimate that made it starve it (see `instant`).
2. The estimator's rate bias alone: one arm, an even flow of units, 5% converting, G fitted
   as the reweight fits it or known; periods of 6 h (delays of mean 6 h) and of a day (mean
   12 h).
3. The delay sample. A week of conversions at 10,000 and 20,000 a day, delays of mean 12 h:
   G(12 h) fitted from the latest 20,000 conversions (before) or from those of a random share
   of the units (now). Then A/A tests: two equal arms for three days, 3,000 conversions a day
   of which 3,000 are fitted (the same proportions), one arm given 80% of the last day; its
   P(best) before and now, beside the P(best) of the complete data (every conversion to come).

Targets: delay-aware loses less regret than waiting; the estimator's bias within 1% where G is
identified; G(12 h) within 0.02 of the truth; the favoured A/A arm's median P(best) within
0.35–0.65 and on average within 0.04 of the complete data's.
"""

import numpy as np

from bandits.delays import DelayDistribution, delay_aware_arms
from bandits.policies import BetaArms, ThompsonSampling, prob_best

RATES = np.array([0.040, 0.045, 0.050, 0.060])
PERIODS, PERIOD_UNITS, PERIOD_HOURS, WINDOW_HOURS, MEAN_DELAY_HOURS = 20, 1_000, 6.0, 72.0, 6.0
SEEDS = 60
BIAS_AT = 4  # periods after which the estimates' bias is measured (30 hours in)
METHODS = ("delay-aware", "delay-aware, before", "wait", "naive", "instant")
HOUR = 3600.0
DELAY_SAMPLE = 20_000  # as experiments/allocation/reweight.py


def truncated_exponential_delays(rng, n: int, mean: float, window: float) -> np.ndarray:
    return -mean * np.log1p(rng.random(n) * np.expm1(-window / mean))


def truncated_exponential_cdf(t, mean: float, window: float) -> np.ndarray:
    t = np.clip(np.asarray(t, dtype=float), 0.0, window)
    return np.expm1(-t / mean) / np.expm1(-window / mean)


def arms_before(units, conversions, ages, delay: DelayDistribution) -> BetaArms:
    """The delay-aware posterior as it was: each cohort at its mean age, a silent unit as G of
    a failure."""
    units, conversions = np.asarray(units, dtype=float), np.asarray(conversions, dtype=float)
    failures = ((units - conversions) * delay.cdf(ages)[None, :]).sum(axis=1)
    return BetaArms(1.0 + conversions.sum(axis=1), 1.0 + failures)


# 1. Regret


def simulate(seed: int) -> dict[str, tuple[float, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n, k = PERIODS * PERIOD_UNITS, len(RATES)
    converts = rng.random((n, k)) < RATES  # would unit t convert (within the window) on arm k
    delays = truncated_exponential_delays(rng, n, MEAN_DELAY_HOURS, WINDOW_HOURS)
    assigned_at = (np.arange(n) // PERIOD_UNITS) * PERIOD_HOURS + (
        np.arange(n) % PERIOD_UNITS
    ) / PERIOD_UNITS * PERIOD_HOURS
    policy = ThompsonSampling(min_weight=0.01)
    out = {}
    for method in METHODS:
        pick_rng = np.random.default_rng(seed + 10_000)  # same assignment draws per method
        chosen = np.empty(n, dtype=int)
        weights = np.full(k, 1 / k)
        estimate = None
        for period in range(PERIODS):
            block = slice(period * PERIOD_UNITS, (period + 1) * PERIOD_UNITS)
            chosen[block] = pick_rng.choice(k, size=PERIOD_UNITS, p=weights)
            now = (period + 1) * PERIOD_HOURS
            arms = _posterior(method, chosen, converts, delays, assigned_at, period, now)
            weights = policy.weights_for(arms)
            if period + 1 == BIAS_AT:
                estimate = arms.mean
        regret = float((RATES.max() - RATES[chosen]).sum())
        out[method] = (regret, estimate)
    return out


def _posterior(method, chosen, converts, delays, assigned_at, period, now) -> BetaArms:
    k = len(RATES)
    seen = slice(0, (period + 1) * PERIOD_UNITS)
    arm = chosen[seen]
    converted = converts[seen][np.arange(arm.size), arm]
    age = now - assigned_at[seen]
    arrived = converted & (delays[seen] <= age)
    cohort = np.arange(arm.size) // PERIOD_UNITS
    if method == "instant":
        return BetaArms.from_counts(
            np.bincount(arm, weights=converted, minlength=k), np.bincount(arm, minlength=k)
        )
    if method == "naive":
        return BetaArms.from_counts(
            np.bincount(arm, weights=arrived, minlength=k), np.bincount(arm, minlength=k)
        )
    closed = age >= WINDOW_HOURS
    if method == "wait":
        return BetaArms.from_counts(
            np.bincount(arm[closed], weights=arrived[closed], minlength=k),
            np.bincount(arm[closed], minlength=k),
        )
    # delay-aware, with cohorts = periods, as arm_stats keeps them
    delay = DelayDistribution.fit(
        delays[seen][arrived] * HOUR,
        age[arrived] * HOUR,
        WINDOW_HOURS * HOUR,
        prior_mean_seconds=18 * HOUR,
    )
    cohorts = period + 1
    units = np.zeros((k, cohorts))
    conversions = np.zeros((k, cohorts))
    np.add.at(units, (arm, cohort), 1)
    np.add.at(conversions, (arm, cohort), arrived)
    ages = (now - (np.arange(cohorts) + 0.5) * PERIOD_HOURS) * HOUR
    if method == "delay-aware, before":
        return arms_before(units, conversions, ages, delay)
    half_widths = np.full(cohorts, PERIOD_HOURS / 2 * HOUR)
    return delay_aware_arms(units, conversions, ages, delay, age_half_widths=half_widths)


def regret_figure() -> bool:
    results = [simulate(seed) for seed in range(SEEDS)]
    regret = {m: np.array([r[m][0] for r in results]) for m in METHODS}
    bias = {
        m: np.mean([(r[m][1] - RATES) / RATES for r in results], axis=0).mean() for m in METHODS
    }
    print(
        f"1. arms {RATES.tolist()}, {PERIODS} periods of {PERIOD_UNITS:,} units every "
        f"{PERIOD_HOURS:g} h, delays exponential mean {MEAN_DELAY_HOURS:g} h within "
        f"{WINDOW_HOURS:g} h, {SEEDS} seeds; regret = expected conversions lost vs the best arm"
    )
    print(f"{'method':<22}{'regret mean ± s.e.':>22}{'rate bias after 30 h':>24}")
    for m in METHODS:
        se = regret[m].std(ddof=1) / np.sqrt(SEEDS)
        print(f"{m:<22}{regret[m].mean():>14.1f} ± {se:<6.1f}{bias[m]:>+23.1%}")
    print("(wait's estimate after 30 h is its prior: no window has closed yet)")
    diff = regret["wait"] - regret["delay-aware"]
    diff_se = diff.std(ddof=1) / np.sqrt(SEEDS)
    print(
        f"wait − delay-aware: {diff.mean():+.1f} ± {diff_se:.1f} conversions; "
        f"|bias| delay-aware {abs(bias['delay-aware']):.1%} vs naive {abs(bias['naive']):.1%}"
    )
    return (
        diff.mean() - 2 * diff_se > 0
        and abs(bias["delay-aware"]) < 0.05
        and abs(bias["naive"]) > 3 * abs(bias["delay-aware"])
    )


# 2. The estimator's bias alone

BIAS_SEEDS, BIAS_RATE, BIAS_UNITS_PER_HOUR = 40, 0.05, 2_000
BIAS_CASES = (  # (period hours, mean delay hours, hours in)
    (6.0, 6.0, 24.0),
    (6.0, 6.0, 48.0),
    (24.0, 12.0, 24.0),
    (24.0, 12.0, 48.0),
    (24.0, 12.0, 96.0),
)


def estimator_bias(period_hours: float, mean_delay: float, hours: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n = int(hours * BIAS_UNITS_PER_HOUR)
    assigned_at = np.sort(rng.uniform(0.0, hours, n))
    converts = rng.random(n) < BIAS_RATE
    delays = truncated_exponential_delays(rng, n, mean_delay, WINDOW_HOURS)
    age = hours - assigned_at
    seen = converts & (delays <= age)
    cohort = (assigned_at // period_hours).astype(int)
    counts = np.bincount(cohort)[None, :].astype(float)
    conversions = np.bincount(cohort, weights=seen)[None, :]
    begins = np.arange(counts.shape[1]) * period_hours
    ends = np.minimum(begins + period_hours, hours)
    ages = (hours - (begins + ends) / 2) * HOUR
    half_widths = (ends - begins) / 2 * HOUR
    window = WINDOW_HOURS * HOUR
    fitted = DelayDistribution.fit(delays[seen] * HOUR, age[seen] * HOUR, window)
    known = DelayDistribution.fit([], [], window, prior_mean_seconds=mean_delay * HOUR)
    complete = converts.mean()  # every conversion to come, seen or not
    now = delay_aware_arms(counts, conversions, ages, fitted, age_half_widths=half_widths)
    known = delay_aware_arms(counts, conversions, ages, known, age_half_widths=half_widths)
    before = arms_before(counts, conversions, ages, fitted)
    return {
        "before": before.mean[0] / complete - 1,
        "now": now.mean[0] / complete - 1,
        "now, G known": known.mean[0] / complete - 1,
    }


def estimator_figure() -> bool:
    print(
        f"\n2. the estimator's rate bias alone: one arm at {BIAS_RATE:.0%}, "
        f"{BIAS_UNITS_PER_HOUR:,} units an hour, {BIAS_SEEDS} seeds, against every conversion "
        "to come (mean ± s.e.)"
    )
    print(f"{'periods':>8}{'delays':>8}{'after':>7}{'before':>16}{'now':>16}{'now, G known':>16}")
    ok = True
    for period_hours, mean_delay, hours in BIAS_CASES:
        runs = [estimator_bias(period_hours, mean_delay, hours, s) for s in range(BIAS_SEEDS)]
        cells = []
        for name in ("before", "now", "now, G known"):
            values = np.array([r[name] for r in runs])
            se = values.std(ddof=1) / np.sqrt(BIAS_SEEDS)
            cells.append(f"{values.mean():+.1%} ± {se:.1%}")
            if name == "now, G known":
                ok = ok and abs(values.mean()) < 0.01
        print(
            f"{period_hours:>6g} h{mean_delay:>6g} h{hours:>5g} h"
            + "".join(f"{c:>16}" for c in cells)
        )
    print(
        "(now vs now, G known: G is not identified beyond the experiment's age; the same "
        "factor for every arm)"
    )
    return ok


# 3. The delay sample


def conversions_seen(rng, days: float, per_day: float, rate: float, favoured: float):
    """Units assigned evenly over `days`; arm 0 gets `favoured` of the last day, half before.
    Returns (assigned hours, arm, converts, delay hours, seen by the end)."""
    hours = days * 24
    n = rng.poisson(per_day / rate * days)
    assigned_at = np.sort(rng.uniform(0.0, hours, n))
    share = np.where(assigned_at >= hours - 24, favoured, 0.5)
    arm = (rng.random(n) >= share).astype(int)
    converts = rng.random(n) < rate
    delays = truncated_exponential_delays(rng, n, 12.0, WINDOW_HOURS)
    seen = converts & (assigned_at + delays <= hours)
    return assigned_at, arm, converts, delays, seen


def fit_sample(assigned_at, delays, seen, hours, picked) -> DelayDistribution:
    chosen = np.flatnonzero(seen)[picked]
    ages = (hours - assigned_at[chosen]) * HOUR
    return DelayDistribution.fit(delays[chosen] * HOUR, ages, WINDOW_HOURS * HOUR)


def latest(assigned_at, delays, seen, n: int) -> np.ndarray:
    """The sample before: the last n conversions to arrive."""
    return np.argsort(assigned_at[seen] + delays[seen])[-n:]


def random_share(rng, seen, n: int) -> np.ndarray:
    """The sample now: the conversions of a random share of the units (by their ids)."""
    return rng.random(int(seen.sum())) < n / seen.sum()


def aa_test(seed: int, rate: float) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    assigned_at, arm, converts, delays, seen = conversions_seen(rng, 3, 3_000, rate, 0.8)
    hours = 72.0
    cohort = assigned_at.astype(int)  # hourly periods
    shape = (2, cohort.max() + 1)
    units, conversions = np.zeros(shape), np.zeros(shape)
    np.add.at(units, (arm, cohort), 1)
    np.add.at(conversions, (arm, cohort), seen)
    ages = np.bincount(cohort, weights=(hours - assigned_at) * HOUR) / np.bincount(cohort)
    before = fit_sample(assigned_at, delays, seen, hours, latest(assigned_at, delays, seen, 3_000))
    now = fit_sample(assigned_at, delays, seen, hours, random_share(rng, seen, 3_000))
    half_widths = np.full(shape[1], HOUR / 2)
    arms = {
        "before": arms_before(units, conversions, ages, before),
        "now": delay_aware_arms(units, conversions, ages, now, age_half_widths=half_widths),
        "complete": BetaArms.from_counts(np.bincount(arm, weights=converts), np.bincount(arm)),
    }
    return tuple(float(prob_best(a)[0]) for a in arms.values())


def sample_figure() -> bool:
    truth = float(truncated_exponential_cdf(12.0, 12.0, WINDOW_HOURS))
    print(
        f"\n3. the delay sample: a week of conversions, delays exponential mean 12 h; "
        f"G(12 h) fitted from {DELAY_SAMPLE:,} (truth {truth:.3f})"
    )
    ok = True
    for per_day in (10_000, 20_000):
        rng = np.random.default_rng(per_day)
        assigned_at, _, _, delays, seen = conversions_seen(rng, 7, per_day, 1.0, 0.5)
        hours = 7 * 24.0
        picks = {
            "latest conversions (before)": latest(assigned_at, delays, seen, DELAY_SAMPLE),
            "random share of units (now)": random_share(rng, seen, DELAY_SAMPLE),
        }
        fitted = {
            name: float(fit_sample(assigned_at, delays, seen, hours, picked).cdf([12 * HOUR])[0])
            for name, picked in picks.items()
        }
        print(f"  {per_day:,} a day: " + "; ".join(f"{n} {g:.3f}" for n, g in fitted.items()))
        ok = ok and abs(fitted["random share of units (now)"] - truth) < 0.02
    print(
        "  A/A, 3 days, 3,000 conversions a day, 3,000 fitted, hourly periods, one arm given "
        "80% of the last day: its P(best), 40 seeds"
    )
    for rate in (0.05, 0.20):
        runs = np.array([aa_test(seed, rate) for seed in range(40)])
        before, now, complete = runs.T
        paired = now - complete
        print(
            f"  converting at {rate:.0%}: median before {np.median(before):.3f}, now "
            f"{np.median(now):.3f}, complete data {np.median(complete):.3f}; now − complete "
            f"{paired.mean():+.3f} ± {paired.std(ddof=1) / np.sqrt(len(paired)):.3f}"
        )
        ok = ok and 0.35 < np.median(now) < 0.65 and abs(paired.mean()) < 0.04
    return ok


def main() -> bool:
    regret = regret_figure()
    estimator = estimator_figure()
    sample = sample_figure()
    return regret and estimator and sample
