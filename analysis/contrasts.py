"""What a published learning compares, on the results' estimand.

Each arm's rate is estimated the way the results estimate it (experiments/results.py): from
pooled counts where every cell (period × segment) assigned with the same weights, else within
each cell and standardised to the cells' shares of all units (analysis/stratified.py). A
variant's learning is its row of the results. A factor level's compares the mean rate of the
variants with the level with the mean rate of their twins (the same variants at the baseline
level), each pair counted once, as the factorial model defines it. Pooling each side's counts
instead weighs every variant and every period by the units a bandit happened to give it: a
side fed in good weeks or good segments looks better than it is.

Every comparison also carries the posterior mean and sd of the log rate ratio
log(p_level / p_baseline): the scale on which evidence is pooled across experiments and judged
for a verdict (analysis/evidence.py). log(1 + the ratio's mean) is not that scale: a ratio's
mean sits above its median, so A/A comparisons would pool to a positive lift.
"""

from dataclasses import dataclass

import numpy as np
from scipy import special

from analysis.stratified import (
    Lattice,
    positive_points,
    stratified_draws,
    stratified_posteriors,
)
from analysis.summary import INTERVAL, Interval, Prior

FLAT_PRIOR = Prior()
# Enough for a log-ratio's mean and sd within 1% of its sd, an interval's ends within 3%: a
# bandit's `all` holds every period × segment cell, and each cell draws for every arm.
DRAWS = 10_000
# A rate indistinguishable from zero in more than this share of draws has no ratio (as the
# results decide for a control under a bandit).
VANISHING_SHARE = 0.001


@dataclass(frozen=True)
class LogRatio:
    """Posterior mean and sd of log(p_level / p_baseline)."""

    mean: float
    sd: float


@dataclass(frozen=True)
class Contrast:
    # mean rate with the level / mean rate of the twins − 1; None where the twins' rate is
    # indistinguishable from zero, its mean None where the twins never converted (the ratio's
    # mean is then the prior's, and unbounded).
    lift: Interval | None
    prob_better: float  # P(the level is better), "better" meaning lower where lower is
    log_ratio: LogRatio | None


def rate_draws(
    units,
    conversions,
    *,
    stratify: bool,
    prior: Prior = FLAT_PRIOR,
    rng: np.random.Generator,
    draws: int = DRAWS,
) -> np.ndarray:
    """Posterior draws (draws × arms) of each arm's rate. units, conversions: (cells, arms).
    Stratified: the cell-weighted mixture the results use (analysis/stratified.py); else
    Beta(prior + conversions, prior + failures) of the pooled counts."""
    units = np.atleast_2d(np.asarray(units, dtype=float))
    conversions = np.atleast_2d(np.asarray(conversions, dtype=float))
    if stratify and np.count_nonzero(units.sum(axis=1)) > 1:
        return stratified_draws(units, conversions, rng, draws)
    n, c = units.sum(axis=0), conversions.sum(axis=0)
    alpha = np.broadcast_to(prior.alpha, n.shape) + c
    beta = np.broadcast_to(prior.beta, n.shape) + n - c
    return rng.beta(alpha, beta, size=(draws, n.size))


def variant_log_ratios(
    units,
    conversions,
    *,
    control: int,
    stratify: bool,
    prior: Prior = FLAT_PRIOR,
) -> list[LogRatio | None]:
    """Each arm's log(p / p_control) (None for the control): exact for the pooled Beta
    posteriors (log p has mean ψ(α) − ψ(α + β) and variance ψ′(α) − ψ′(α + β)), else from
    exact stratified posteriors (`stratified_posteriors`: the moments of log p summed over
    each arm's lattice), None where a rate is indistinguishable from zero."""
    units = np.atleast_2d(np.asarray(units, dtype=float))
    conversions = np.atleast_2d(np.asarray(conversions, dtype=float))
    arms = range(units.shape[1])
    if stratify and np.count_nonzero(units.sum(axis=1)) > 1:
        moments = [_log_moments(lattice) for lattice in stratified_posteriors(units, conversions)]
        if moments[control] is None:
            return [None for _ in arms]
        (mean0, variance0) = moments[control]
        return [
            None
            if i == control or moments[i] is None
            else LogRatio(moments[i][0] - mean0, float(np.sqrt(moments[i][1] + variance0)))
            for i in arms
        ]
    n, c = units.sum(axis=0), conversions.sum(axis=0)
    alpha = np.broadcast_to(prior.alpha, n.shape) + c
    beta = np.broadcast_to(prior.beta, n.shape) + n - c
    mean, variance = beta_log_moments(alpha, beta)
    return [
        None
        if i == control
        else LogRatio(
            float(mean[i] - mean[control]), float(np.sqrt(variance[i] + variance[control]))
        )
        for i in arms
    ]


def _log_moments(lattice: Lattice) -> tuple[float, float] | None:
    """Mean and variance of log p on a lattice; None where p is indistinguishable from 0."""
    if lattice.near_zero > VANISHING_SHARE:
        return None
    logs = np.log(positive_points(lattice))
    mean = float(np.dot(lattice.mass, logs))
    return mean, float(np.dot(lattice.mass, (logs - mean) ** 2))


def beta_log_moments(alpha, beta) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of log p for p ~ Beta(alpha, beta), elementwise."""
    alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
    mean = special.digamma(alpha) - special.digamma(alpha + beta)
    return mean, special.polygamma(1, alpha) - special.polygamma(1, alpha + beta)


def log_ratio(draws: np.ndarray, with_level: list[int], without: list[int]) -> LogRatio | None:
    """log(mean rate of `with_level` / mean rate of `without`) from rate draws; None where the
    baseline's rate is indistinguishable from zero."""
    level, baseline = _sides(draws, with_level, without)
    if np.mean(baseline < 1e-12) > VANISHING_SHARE or np.mean(level < 1e-12) > VANISHING_SHARE:
        return None
    logs = np.log(np.maximum(level, 1e-300)) - np.log(np.maximum(baseline, 1e-300))
    return LogRatio(float(logs.mean()), float(logs.std()))


def group_contrast(
    draws: np.ndarray,
    with_level: list[int],
    without: list[int],
    *,
    baseline_conversions: float,
    higher_is_better: bool = True,
) -> Contrast:
    """The mean rate of the arms `with_level` against that of their twins `without` (paired
    by position), from rate draws (draws × arms); `baseline_conversions` is what the twins
    converted, all told."""
    level, baseline = _sides(draws, with_level, without)
    better = level > baseline if higher_is_better else level < baseline
    lift = None
    if np.mean(baseline < 1e-12) <= VANISHING_SHARE:
        ratio = level / np.maximum(baseline, 1e-300)
        tail = (1 - INTERVAL) / 2
        low, median, high = np.quantile(ratio - 1, [tail, 0.5, 1 - tail])
        mean = float(ratio.mean() - 1) if baseline_conversions > 0 else None
        lift = Interval(mean, float(low), float(high), median=float(median))
    return Contrast(lift, float(better.mean()), log_ratio(draws, with_level, without))


def _sides(draws, with_level, without) -> tuple[np.ndarray, np.ndarray]:
    if not with_level or len(with_level) != len(without):
        raise ValueError("Need one twin per arm with the level, and at least one pair.")
    return draws[:, with_level].mean(axis=1), draws[:, without].mean(axis=1)
