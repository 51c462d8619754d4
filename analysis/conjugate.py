"""Conjugate Beta-Binomial summaries of a binary metric: the building blocks of the results.

Each arm's rate has the posterior Beta(prior_alpha + conversions, prior_beta + failures). From
those posteriors: the rate's mean and equal-tailed 95% interval, P(variant beats control)
by numerical integration (within about 1e-5 of the closed form for integer
parameters), the relative lift's mean (closed form) and interval (seeded Monte Carlo), and
the expected loss of choosing an arm.
"""

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

INTERVAL = 0.95


@dataclass(frozen=True)
class RateSummary:
    mean: float
    low: float
    high: float


def rate_summary(alpha: float, beta: float, level: float = INTERVAL) -> RateSummary:
    tail = (1 - level) / 2
    low, high = stats.beta.ppf([tail, 1 - tail], alpha, beta)
    return RateSummary(alpha / (alpha + beta), float(low), float(high))


def prob_beat(alpha: float, beta: float, alpha0: float, beta0: float) -> float:
    """P(p > p0) for p ~ Beta(alpha, beta), p0 ~ Beta(alpha0, beta0), independent:
    ∫ f(x) F0(x) dx by the trapezoid rule on a grid dense where either posterior has mass."""
    points = 4096
    low = min(special.betaincinv(alpha, beta, 1e-12), special.betaincinv(alpha0, beta0, 1e-12))
    high = max(
        special.betaincinv(alpha, beta, 1 - 1e-12), special.betaincinv(alpha0, beta0, 1 - 1e-12)
    )
    grid = np.unique(
        np.concatenate(
            [
                np.linspace(low, high, points),
                stats.beta.ppf(np.linspace(1e-9, 1 - 1e-9, points), alpha, beta),
                stats.beta.ppf(np.linspace(1e-9, 1 - 1e-9, points), alpha0, beta0),
            ]
        )
    )
    integrand = stats.beta.pdf(grid, alpha, beta) * special.betainc(alpha0, beta0, grid)
    return float(np.clip(np.trapezoid(integrand, grid), 0.0, 1.0))


def prob_beat_closed_form(alpha: int, beta: int, alpha0: int, beta0: int) -> float:
    """The same probability in closed form, for an integer `alpha` (Evan Miller's sum):
    Σ_{i<alpha} B(alpha0+i, beta0+beta) / ((beta+i) B(1+i, beta) B(alpha0, beta0))."""
    i = np.arange(int(alpha))
    log_terms = (
        special.betaln(alpha0 + i, beta0 + beta)
        - np.log(beta + i)
        - special.betaln(1 + i, beta)
        - special.betaln(alpha0, beta0)
    )
    return float(np.exp(special.logsumexp(log_terms)))


@dataclass(frozen=True)
class LiftSummary:
    mean: float
    low: float
    high: float


def lift_summary(
    alpha: float,
    beta: float,
    alpha0: float,
    beta0: float,
    rng: np.random.Generator,
    draws: int = 200_000,
    level: float = INTERVAL,
) -> LiftSummary:
    """Relative lift p / p0 − 1: its mean in closed form, E[p]·E[1/p0] − 1 (finite when
    alpha0 > 1), and its equal-tailed interval from `draws` joint posterior draws."""
    if alpha0 <= 1:
        raise ValueError("The control's posterior needs alpha > 1 for the lift to have a mean.")
    mean = alpha / (alpha + beta) * (alpha0 + beta0 - 1) / (alpha0 - 1) - 1
    ratio = rng.beta(alpha, beta, draws) / rng.beta(alpha0, beta0, draws) - 1
    tail = (1 - level) / 2
    low, high = np.quantile(ratio, [tail, 1 - tail])
    return LiftSummary(float(mean), float(low), float(high))


def expected_loss(
    alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator, draws: int = 200_000
) -> np.ndarray:
    """E[max_j p_j − p_i] per arm: the rate given up, in expectation, by choosing arm i."""
    alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
    samples = rng.beta(alpha, beta, size=(draws, alpha.size))
    return (samples.max(axis=1, keepdims=True) - samples).mean(axis=0)
