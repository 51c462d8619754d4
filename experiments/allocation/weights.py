"""How weights are chosen: from an experiment's allocation, its policy; from the counts per
segment and variant (experiments/statistics/bandit_counts.py), the next period's weights.

No database: counts and flags in, weights out. Reading the counts and opening the period that
carries the weights are experiments/allocation/reweight.py's business.
"""

import numpy as np

from bandits.policies import FixedSplit, ThompsonSampling, cap_arms, exclude_arms, segment_weights
from experiments.statistics.cells import prior_arms
from experiments.storage.tables import Experiment

# The most a variant whose guardrail tripped (not yet conclusively) gets: the floor min_weight,
# or this if the floor is lower. A tripped arm at zero would never clear a false alarm; at 1%
# it costs 1% of the users while the evidence settles either way.
TRIPPED_ARM_SHARE = 0.01
# How many units the pooled (all-segment) rate of an arm is worth in a segment's prior. A cold
# segment then starts from what the others have shown rather than from nothing, yet 100 of its
# own units outweigh the prior ten to one.
PRIOR_PSEUDO_UNITS = 10.0


def allocation_policy(experiment: Experiment) -> FixedSplit | ThompsonSampling:
    """The policy the experiment's allocation names: its declared split, which never changes,
    or Thompson sampling floored at its `min_weight`, which a reweight recomputes."""
    if experiment.allocation == "thompson":
        return ThompsonSampling(min_weight=experiment.min_weight)
    return FixedSplit(tuple(v.weight for v in experiment.variants))


def short_arms(trials: np.ndarray, variants: list[str], min_units: int) -> list[tuple[str, int]]:
    """(variant, units) of each variant with fewer than `min_units` units over all segments:
    while there is one, the weights stay as they are."""
    per_arm = trials.sum(axis=0)
    return [(v, int(n)) for v, n in zip(variants, per_arm, strict=True) if n < min_units]


def with_learned_prior(
    successes: np.ndarray,
    trials: np.ndarray,
    priors: dict,
    segments: list[str],
    variants: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """(successes, trials) with the registry's evidence added as pseudo-observations, each
    segment's worth the learned prior's units (a segment it had not seen takes `all`'s)."""
    successes, trials = successes.copy(), trials.copy()
    for i, segment in enumerate(segments):
        found = prior_arms(priors, segment, variants)
        if found is not None:
            successes[i] += found[0]
            trials[i] += np.add(found[0], found[1])
    return successes, trials


def choose_weights(
    successes: np.ndarray,
    trials: np.ndarray,
    segments: list[str],
    variants: list[str],
    policy: ThompsonSampling,
    excluded: np.ndarray | None = None,
    held: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Weights per segment, each segment's posterior starting from the arm's rate pooled over
    all segments (`segment_weights`). Arms whose guardrail harm is conclusive (`excluded`) get
    exactly zero; arms whose guardrail tripped short of that (`held`) get at most the floor,
    the policy's `min_weight` (at least TRIPPED_ARM_SHARE), so that they keep collecting the
    data that would clear them or settle the harm."""
    shares = segment_weights(successes, trials, policy, PRIOR_PSEUDO_UNITS)
    if excluded is not None and excluded.any():
        shares = exclude_arms(shares, excluded)
    if held is not None and held.any():
        shares = cap_arms(shares, held, max(policy.min_weight, TRIPPED_ARM_SHARE))
    return {
        segment: {v: round(float(w), 6) for v, w in zip(variants, row, strict=True)}
        for segment, row in zip(segments, shares, strict=True)
    }
