"""Conjugate Beta-Binomial summaries of a binary metric: the building blocks of the results.

Each arm's rate has the posterior Beta(prior_alpha + conversions, prior_beta + failures). From
those posteriors: the rate's mean and equal-tailed 95% interval, P(variant beats control)
by numerical integration in t = logit(p) (`logit_grid`; within about 1e-5 of the closed form
for integer parameters, and as exact for any positive parameters), the relative lift's mean
(closed form) and interval (seeded Monte Carlo), and the expected loss of choosing an arm.
"""

from dataclasses import dataclass

import numpy as np
from scipy import integrate, special, stats

INTERVAL = 0.95
# Every grid spans each posterior from its TAIL to its 1 − TAIL quantile.
TAIL = 1e-12
LOGIT_TAIL = float(np.log((1 - TAIL) / TAIL))
# Below p = e^LOG_TINY a double loses p (it underflows near e^−745): there the lower tail is
# the Beta's asymptote I_p(α, β) = p^α / (α B(α, β)) · (1 + O(β p)), exact in double. Only a
# posterior with α well below 1 puts mass there: α = 1e-4 (a learned prior's floor, a
# 1e-4 baseline worth one unit) puts 93% of its mass below e^−700.
LOG_TINY = -700.0


@dataclass(frozen=True)
class RateSummary:
    mean: float
    low: float
    high: float


def checked_counts(units, conversions, *, shape: str, each: str) -> tuple[np.ndarray, np.ndarray]:
    """(units, conversions) as 2-D float arrays of the same shape, or a ValueError naming the
    `shape` expected ("(periods, arms)") and the cell (`each`, "period") that breaks
    0 ≤ conversions ≤ units."""
    units = np.asarray(units, dtype=float)
    conversions = np.asarray(conversions, dtype=float)
    if units.shape != conversions.shape or units.ndim != 2:
        raise ValueError(f"units and conversions must both have shape {shape}.")
    if np.any(conversions < 0) or np.any(conversions > units):
        raise ValueError(f"Need 0 ≤ conversions ≤ units in every {each}.")
    return units, conversions


def rate_summary(alpha: float, beta: float, level: float = INTERVAL) -> RateSummary:
    tail = (1 - level) / 2
    low, high = stats.beta.ppf([tail, 1 - tail], alpha, beta)
    return RateSummary(alpha / (alpha + beta), float(low), float(high))


def beta_log_cdf(alpha, beta, log_x) -> np.ndarray:
    """I_x(alpha, beta), the Beta's CDF, at x = e^log_x (log_x ≤ 0), also where x underflows."""
    log_x = np.asarray(log_x, dtype=float)
    cdf = special.betainc(alpha, beta, np.exp(np.maximum(log_x, LOG_TINY)))
    tiny = log_x < LOG_TINY
    if tiny.any():
        alpha, beta, log_x = np.broadcast_arrays(alpha, beta, log_x)
        tiny = np.broadcast_to(tiny, log_x.shape)
        a, b = alpha[tiny], beta[tiny]
        cdf[tiny] = np.exp(a * log_x[tiny] - np.log(a) - special.betaln(a, b))
    return cdf


def beta_log_ppf(alpha, beta, q) -> np.ndarray:
    """log of the q-quantile of Beta(alpha, beta) (0 < q ≤ 1), also where the quantile
    underflows: there the asymptote of `beta_log_cdf` is inverted."""
    alpha, beta, q = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (alpha, beta, q)))
    x = special.betaincinv(alpha, beta, q)
    log_x = np.log(np.maximum(x, np.exp(LOG_TINY)))
    tiny = x < np.exp(LOG_TINY)
    if tiny.any():
        a, b = alpha[tiny], beta[tiny]
        log_x[tiny] = (np.log(q[tiny]) + np.log(a) + special.betaln(a, b)) / a
    return log_x


def beta_logit_ppf(alpha, beta, q, upper_q) -> np.ndarray:
    """logit of the q-quantile of Beta(alpha, beta), `upper_q` being 1 − q (given, not
    computed, so that both tails keep their precision): log p − log(1 − p), with 1 − p the
    (1 − q)-quantile of Beta(beta, alpha)."""
    return beta_log_ppf(alpha, beta, q) - beta_log_ppf(beta, alpha, upper_q)


@dataclass(frozen=True)
class LogitGrid:
    """Beta posteriors on one grid in t = logit(p): each arm's CDF at every point."""

    t: np.ndarray
    cdf: np.ndarray  # (arms, points)

    @property
    def p(self) -> np.ndarray:
        return special.expit(self.t)


def logit_grid(alpha, beta, points: int) -> LogitGrid:
    """A grid in t = logit(p) dense where each Beta(alpha[i], beta[i]) has mass, with each
    arm's CDF there: the cumulative trapezoid of the density of t, p^α (1 − p)^β / B(α, β).

    Why t and not p: in p the density is unbounded at 0 when α < 1 (at 1 when β < 1), as learned
    priors make it (α = baseline × prior units), and a grid in p put most of its mass in the
    first cell, driving P(beat), P(best) and means to 0. In t the density is bounded, smooth and
    log-concave for every positive α, β, with exponential tails e^{αt} and e^{−βt}.

    Each arm brings `points` / arms points (256 at least) evenly spaced between its TAIL and
    1 − TAIL quantiles. An arm with a parameter below 1 also brings as many quantiles evenly
    spaced in logit(q): its tail e^{αt} is then 1/α long (27.6 / α between the quantiles) and
    evenly spaced points would leave its last cells, where its mass meets the (1 − p)^β
    cliff, holding percents of mass each.
    """
    alpha = np.atleast_1d(np.asarray(alpha, dtype=float))
    beta = np.atleast_1d(np.asarray(beta, dtype=float))
    per_arm = max(256, points // alpha.size)
    low = beta_logit_ppf(alpha, beta, TAIL, 1 - TAIL)
    high = beta_logit_ppf(alpha, beta, 1 - TAIL, TAIL)
    parts = [np.linspace(lo, hi, per_arm) for lo, hi in zip(low, high, strict=True)]
    levels = np.linspace(-LOGIT_TAIL, LOGIT_TAIL, per_arm)
    for a, b in zip(alpha, beta, strict=True):
        if min(a, b) < 1:
            parts.append(beta_logit_ppf(a, b, special.expit(levels), special.expit(-levels)))
    t = np.unique(np.concatenate(parts))
    pdf = np.exp(
        alpha[:, None] * special.log_expit(t)
        + beta[:, None] * special.log_expit(-t)
        - special.betaln(alpha, beta)[:, None]
    )
    cdf = integrate.cumulative_trapezoid(pdf, t, axis=1, initial=0.0)
    return LogitGrid(t, cdf / cdf[:, -1:])


def expectation(cdf: np.ndarray, values: np.ndarray) -> np.ndarray:
    """E_i[g] = ∫ g dF_i per arm, by the trapezoid rule in F_i (Riemann-Stieltjes):
    Σ ΔF_i · (g_k + g_{k+1}) / 2 over the grid points k. `cdf` holds each arm's CDF there,
    `values` g (one row for every arm, or a row per arm). No density is needed, so it holds
    where a density is unbounded, and P(beat) of two identical posteriors is exactly 1/2."""
    steps = np.diff(cdf, axis=-1)
    return (steps * (values[..., 1:] + values[..., :-1]) / 2).sum(axis=-1) / steps.sum(axis=-1)


def prob_beat(alpha: float, beta: float, alpha0: float, beta0: float) -> float:
    """P(p > p0) for p ~ Beta(alpha, beta), p0 ~ Beta(alpha0, beta0), independent:
    E[F0(p)] = ∫ F0 dF over t = logit(p) (`logit_grid`, `expectation`)."""
    grid = logit_grid([alpha0, alpha], [beta0, beta], points=4096)
    return float(np.clip(expectation(grid.cdf[1], grid.cdf[0]), 0.0, 1.0))


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
