"""Allocation policies: from arm statistics to weights. Small immutable objects that validate
themselves on construction (a clear ValueError) and take their randomness injected.
"""

from dataclasses import dataclass

import numpy as np

from analysis.conjugate import expectation, logit_grid


@dataclass(frozen=True)
class BetaArms:
    """Beta posteriors of K arms' conversion rates: alpha = prior + successes, beta = prior +
    failures (each may be fractional, e.g. when open units count for part of a trial)."""

    alpha: np.ndarray
    beta: np.ndarray

    def __post_init__(self):
        alpha = np.asarray(self.alpha, dtype=float)
        beta = np.asarray(self.beta, dtype=float)
        if alpha.ndim != 1 or alpha.shape != beta.shape or alpha.size == 0:
            raise ValueError("alpha and beta must be 1-D arrays of the same, non-zero length.")
        if not (np.all(alpha > 0) and np.all(beta > 0)):
            raise ValueError("Beta parameters must be positive.")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)

    @classmethod
    def from_counts(cls, successes, trials, prior_alpha=1.0, prior_beta=1.0) -> "BetaArms":
        successes = np.asarray(successes, dtype=float)
        trials = np.asarray(trials, dtype=float)
        if np.any(successes < 0) or np.any(trials < successes):
            raise ValueError("Need 0 ≤ successes ≤ trials for every arm.")
        return cls(prior_alpha + successes, prior_beta + trials - successes)

    @property
    def mean(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)

    def __len__(self) -> int:
        return self.alpha.size


@dataclass(frozen=True)
class FixedSplit:
    """The declared weights, unchanged: a classic A/B/n split."""

    weights: tuple[float, ...]

    def __post_init__(self):
        weights = np.asarray(self.weights, dtype=float)
        if weights.ndim != 1 or weights.size < 1 or np.any(weights < 0):
            raise ValueError("Weights must be a non-empty list of non-negative numbers.")
        if abs(weights.sum() - 1.0) > 1e-6:
            raise ValueError(f"Weights must sum to 1, not {weights.sum():.6g}.")

    def weights_for(self, arms: BetaArms | None = None) -> np.ndarray:
        return np.asarray(self.weights, dtype=float)


@dataclass(frozen=True)
class ThompsonSampling:
    """Weights = posterior probability that each arm is best, floored at `min_weight`.

    Allocating in proportion to P(best) is Thompson sampling done in batches (by periods), as
    GrowthBook, Statsig and Braze do: every unit of a period sees the same weights, so each
    assignment's propensity is known exactly and the data stay analysable.

    P(best) is computed by numerical integration rather than by sampling: it is exact to
    about 1e-6 and deterministic, where Monte Carlo needs ~100,000 draws per segment (70 ms for
    eight arms) to be stable to ±0.005. `prob_best_monte_carlo` is kept as the cross-check.
    """

    min_weight: float = 0.01

    def __post_init__(self):
        if not 0 <= self.min_weight < 1:
            raise ValueError("min_weight must be in [0, 1).")

    def weights_for(self, arms: BetaArms) -> np.ndarray:
        k = len(arms)
        if self.min_weight * k >= 1:
            raise ValueError(
                f"min_weight {self.min_weight} leaves nothing to allocate to {k} arms."
            )
        return apply_floor(prob_best(arms), self.min_weight)


def prob_best(arms: BetaArms) -> np.ndarray:
    """P(arm i has the highest rate) = E_i[Π_{j≠i} F_j(p_i)], integrated over t = logit(p)
    (`logit_grid`, `expectation` in analysis/conjugate.py): there every Beta density is
    bounded, learned priors' parameters below 1 included, where a grid in p met the
    density's singularity (NaN weights for Beta(0.3, 0.3)).

    The grid joins, for every arm, points between its 1e-12 and 1 − 1e-12 quantiles, so even
    a very concentrated posterior is sampled densely where its mass is. The product over the
    other arms is built from prefix and suffix sums of log-CDFs (no division, so a CDF of
    exactly 0 is harmless).
    """
    if len(arms) == 1:
        return np.ones(1)
    grid = logit_grid(arms.alpha, arms.beta, points=4096)
    with np.errstate(divide="ignore"):
        log_cdf = np.log(grid.cdf)
    prefix = np.vstack([np.zeros(grid.t.size), np.cumsum(log_cdf, axis=0)[:-1]])
    suffix = np.vstack([np.cumsum(log_cdf[::-1], axis=0)[:-1][::-1], np.zeros(grid.t.size)])
    probabilities = expectation(grid.cdf, np.exp(prefix + suffix))
    return probabilities / probabilities.sum()


def prob_best_monte_carlo(
    arms: BetaArms, rng: np.random.Generator, draws: int = 100_000
) -> np.ndarray:
    """P(best) by sampling the joint posterior (vectorised): the reference `prob_best` is
    checked against. Its standard error is at most 0.5 / sqrt(draws)."""
    samples = rng.beta(arms.alpha, arms.beta, size=(draws, len(arms)))
    return np.bincount(np.argmax(samples, axis=1), minlength=len(arms)) / draws


def apply_floor(weights: np.ndarray, min_weight: float) -> np.ndarray:
    """Every arm keeps at least `min_weight`; the rest is shared in proportion to `weights`.

    Clipping then renormalising would push clipped arms back under the floor; mixing instead,
    w' = m + (1 − K·m)·w, keeps the floor exactly and the order of the weights. The floor keeps
    exploring arms that look bad early, and keeps every propensity away from zero so that
    inverse-propensity estimates stay finite.
    """
    weights = np.asarray(weights, dtype=float)
    weights = weights / weights.sum()
    return min_weight + (1.0 - len(weights) * min_weight) * weights


def exclude_arms(weights: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Weights (segments × arms) with the excluded arms at exactly zero and the others scaled
    up in proportion, so each keeps at least its floor. A guardrail whose harm is conclusive
    excludes an arm: exploring it further would only harm more users. Every arm excluded is
    refused."""
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    keep = ~np.asarray(excluded, dtype=bool)
    if keep.shape != weights.shape[-1:] or not keep.any():
        raise ValueError("Exclude some of the arms, not all, with one flag per arm.")
    kept = weights * keep
    return kept / kept.sum(axis=1, keepdims=True)


def cap_arms(weights: np.ndarray, capped: np.ndarray, share: float) -> np.ndarray:
    """Weights (segments × arms) with each capped arm at `share` at most, what it gives up
    shared by the other arms in proportion to their weights (equally if they have none).

    A guardrail that trips but is not yet conclusive caps an arm at the exploration floor
    instead of switching it off: at zero it would get no data, and a false alarm (one harmless
    arm in twenty may trip at some look) could never clear, nor a real harm become conclusive.
    Every arm capped is refused."""
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    capped = np.asarray(capped, dtype=bool)
    if capped.shape != weights.shape[-1:] or capped.all() or not 0 <= share <= 1:
        raise ValueError(
            "Cap some of the arms, not all, with one flag per arm, at a share in [0, 1]."
        )
    held = np.where(capped, np.minimum(weights, share), weights)
    freed = (weights - held).sum(axis=1, keepdims=True)
    others = np.where(capped, 0.0, held)
    total = others.sum(axis=1, keepdims=True)
    even = np.where(capped, 0.0, 1.0) / (~capped).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(total > 0, others / total, even)
    return held + freed * spread


def pooled_prior(
    successes: np.ndarray, trials: np.ndarray, pseudo_units: float
) -> tuple[np.ndarray, np.ndarray]:
    """Beta prior per arm from its rate pooled over all segments, worth `pseudo_units` units.

    A cold segment starts from what the other segments have shown (not from zero knowledge),
    but only as much as a handful of its own units: its own data soon dominate.
    successes and trials have shape (segments, arms).
    """
    successes = np.asarray(successes, dtype=float).sum(axis=0)
    trials = np.asarray(trials, dtype=float).sum(axis=0)
    rate = (1.0 + successes) / (2.0 + trials)
    return 1.0 + pseudo_units * rate, 1.0 + pseudo_units * (1.0 - rate)


def segment_weights(
    successes: np.ndarray,
    trials: np.ndarray,
    policy: ThompsonSampling,
    pseudo_units: float,
) -> np.ndarray:
    """Thompson weights per segment, shape (segments, arms), each segment's posterior starting
    from the arm's rate pooled over all segments (see `pooled_prior`)."""
    successes = np.asarray(successes, dtype=float)
    trials = np.asarray(trials, dtype=float)
    prior_alpha, prior_beta = pooled_prior(successes, trials, pseudo_units)
    return np.vstack(
        [
            policy.weights_for(BetaArms(prior_alpha + s, prior_beta + n - s))
            for s, n in zip(successes, trials, strict=True)
        ]
    )
