"""Bandit regret with batched updates: Kairos's Thompson sampling (as the service runs it:
P(best) weights per period, a weight floor, units hashed into the weights) against MABWiser's
Thompson sampling and a uniform split, on the same simulated arms and the same draws.

Target: Kairos's mean regret ≤ 1.05 × MABWiser's, and far below uniform.
"""

import numpy as np

from bandits.hashing import bucket, pick
from bandits.policies import ThompsonSampling
from experiments.allocation.weights import choose_weights

ARMS = np.array([0.040, 0.045, 0.050, 0.060])  # true conversion rates
UNITS, PERIOD, SEEDS = 20_000, 1_000, 100


def kairos_regret(rewards: np.ndarray, seed: int, min_weight: float) -> float:
    k = len(ARMS)
    successes, trials = np.zeros((1, k)), np.zeros((1, k))
    weights = np.full(k, 1 / k)
    chosen = np.empty(UNITS, dtype=int)
    variants = [str(i) for i in range(k)]
    for start in range(0, UNITS, PERIOD):
        period_seed = seed * 1000 + start
        cumulative = list(np.cumsum(weights))
        for t in range(start, min(start + PERIOD, UNITS)):
            chosen[t] = pick(cumulative, bucket(period_seed, f"unit-{t}"))
        block = slice(start, start + PERIOD)
        trials[0] += np.bincount(chosen[block], minlength=k)
        successes[0] += np.bincount(
            chosen[block],
            weights=rewards[block][np.arange(len(chosen[block])), chosen[block]],
            minlength=k,
        )
        policy = ThompsonSampling(min_weight=min_weight)
        shares = choose_weights(successes, trials, ["all"], variants, policy)["all"]
        weights = np.array([shares[v] for v in variants])
        weights /= weights.sum()
    return _regret(chosen)


def mabwiser_regret(rewards: np.ndarray, seed: int) -> float:
    from mabwiser.mab import MAB, LearningPolicy

    k = len(ARMS)
    mab = MAB(list(range(k)), LearningPolicy.ThompsonSampling(), seed=seed)
    chosen = np.empty(UNITS, dtype=int)
    first = True
    for start in range(0, UNITS, PERIOD):
        block = slice(start, start + PERIOD)
        if first:
            decisions = np.random.default_rng(seed).integers(0, k, PERIOD)
            first = False
        else:
            decisions = np.array(mab.predict(np.zeros((PERIOD, 1))))
        chosen[block] = decisions
        got = rewards[block][np.arange(PERIOD), decisions]
        if start == 0:
            mab.fit(decisions.tolist(), got.tolist())
        else:
            mab.partial_fit(decisions.tolist(), got.tolist())
    return _regret(chosen)


def uniform_regret(seed: int) -> float:
    return _regret(np.random.default_rng(seed).integers(0, len(ARMS), UNITS))


def _regret(chosen: np.ndarray) -> float:
    """Expected regret: conversions lost against always sending the best arm."""
    return float((ARMS.max() - ARMS[chosen]).sum())


def main() -> bool:
    results = {"kairos": [], "kairos_floor0": [], "mabwiser": [], "uniform": []}
    for seed in range(SEEDS):
        rng = np.random.default_rng(10_000 + seed)
        rewards = (rng.random((UNITS, len(ARMS))) < ARMS).astype(float)  # shared draws
        results["kairos"].append(kairos_regret(rewards, seed, min_weight=0.01))
        results["kairos_floor0"].append(kairos_regret(rewards, seed, min_weight=0.0))
        results["mabwiser"].append(mabwiser_regret(rewards, seed))
        results["uniform"].append(uniform_regret(seed))
    mean = {name: np.mean(values) for name, values in results.items()}
    se = {name: np.std(values, ddof=1) / np.sqrt(SEEDS) for name, values in results.items()}
    ratio = mean["kairos"] / mean["mabwiser"]
    paired = np.array(results["kairos"]) - np.array(results["mabwiser"])
    print(
        f"arms {ARMS.tolist()}, {UNITS:,} units in periods of {PERIOD:,}, {SEEDS} seeds; "
        "expected regret (conversions lost vs. the best arm), mean ± s.e."
    )
    labels = {
        "kairos": "Kairos Thompson, floor 0.01 (default)",
        "kairos_floor0": "Kairos Thompson, floor 0",
        "mabwiser": "MABWiser ThompsonSampling, batched",
        "uniform": "uniform split",
    }
    for name, label in labels.items():
        print(f"  {label:<40} {mean[name]:8.1f} ± {se[name]:.1f}")
    print(
        f"ratio Kairos / MABWiser {ratio:.3f} (target ≤ 1.05); paired difference "
        f"{paired.mean():+.1f} ± {paired.std(ddof=1) / np.sqrt(SEEDS):.1f}; "
        f"Kairos / uniform {mean['kairos'] / mean['uniform']:.2f}"
    )
    return ratio <= 1.05 and mean["kairos"] < 0.5 * mean["uniform"]
