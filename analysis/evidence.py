"""Evidence within and across experiments: verdicts, and the random-effects meta-analysis.

Both read each comparison on the log rate ratio θ = log(p_level / p_baseline), through its
posterior mean and sd (analysis/contrasts.py). A learning's lift interval is reported as the
results show it, but its mean, the posterior mean of p_level / p_baseline − 1, is no summary to
pool: a ratio's mean sits above its median, so log(1 + mean) is biased upward, and 8 pooled A/A
experiments came out +2.8% at a 2% base rate, +8.6% at 1%, the interval excluding 0 upward
5.7% of the time against 0.7% downward (issue 13; simulated again in bench/bench_registry.py).

A verdict's win or loss must be a discovery of its publication (analysis/discovery.py).

The pooled effect of a factor level is the DerSimonian-Laird random-effects mean of the θs:
experiments differ (audiences, seasons, copy), so besides each one's sampling error there is a
spread τ between them, estimated from Cochran's Q and added to every variance before weighting.
"""

import math
from dataclasses import dataclass

from analysis.discovery import FALSE_DISCOVERY_RATE

Z = 1.959963984540054
WIN_PROBABILITY = 0.95
FLAT_MARGIN = 0.02


@dataclass(frozen=True)
class Thresholds:
    """A learning is `flat` when its whole 95% interval lies within ±flat_margin (judged
    first: a precisely measured +1% is negligible, not a win). Otherwise it is a `win` when
    P(better) ≥ win_probability and it is a discovery of its publication at
    `false_discovery_rate` (analysis/discovery.py: valid under daily looks and across all the
    publication's comparisons), a `loss` likewise when P(better) ≤ 1 − win_probability, and
    `inconclusive` otherwise."""

    win_probability: float = WIN_PROBABILITY
    flat_margin: float = FLAT_MARGIN
    false_discovery_rate: float = FALSE_DISCOVERY_RATE

    def __post_init__(self):
        if not 0.5 < self.win_probability < 1 or not 0 < self.flat_margin < 1:
            raise ValueError("Need 0.5 < win_probability < 1 and 0 < flat_margin < 1.")
        if not 0 < self.false_discovery_rate < 1:
            raise ValueError("Need 0 < false_discovery_rate < 1.")


def verdict(
    prob_better: float,
    low: float,
    high: float,
    thresholds: Thresholds = Thresholds(),
    *,
    discovered: bool,
) -> str:
    if -thresholds.flat_margin <= low and high <= thresholds.flat_margin:
        return "flat"
    if discovered and prob_better >= thresholds.win_probability:
        return "win"
    if discovered and prob_better <= 1 - thresholds.win_probability:
        return "loss"
    return "inconclusive"


@dataclass(frozen=True)
class Study:
    """One experiment's θ = log(p_level / p_baseline): posterior mean and sd."""

    name: str
    log_lift: float
    se: float

    def __post_init__(self):
        if not self.se > 0 or not math.isfinite(self.log_lift):
            raise ValueError(f"Study {self.name!r} needs a finite log-lift and a positive sd.")

    @classmethod
    def from_interval(cls, name: str, low: float, high: float) -> "Study":
        """From a lift's 95% interval alone (a learning published before its log-lift was
        stored): the interval's centre and half-width on the log scale."""
        if not -1 < low < high:
            raise ValueError(f"Study {name!r} needs −1 < low < high.")
        return cls(name, *interval_log_lift(low, high))


def interval_log_lift(low: float, high: float) -> tuple[float, float]:
    """θ's mean and sd read from a lift's 95% interval: its centre and half-width on the log
    scale (for a PyMC job's learnings, and those published before θ was stored)."""
    centre = (math.log1p(low) + math.log1p(high)) / 2
    return centre, (math.log1p(high) - math.log1p(low)) / (2 * Z)


@dataclass(frozen=True)
class Pooled:
    log_lift: float  # the pooled θ
    se: float  # its standard error
    tau: float  # between-experiment spread of θ
    i_squared: float  # share of the variation that is between experiments
    q: float
    weights: tuple[float, ...]  # each study's share of the pooled estimate

    @property
    def lift(self) -> float:
        """exp(θ) − 1: the lift at the pooled log ratio (a median, not a mean)."""
        return math.expm1(self.log_lift)

    @property
    def low(self) -> float:
        return math.expm1(self.log_lift - Z * self.se)

    @property
    def high(self) -> float:
        return math.expm1(self.log_lift + Z * self.se)

    @property
    def prob_positive(self) -> float:
        """P(θ > 0) under the pooled Normal."""
        return 0.5 * math.erfc(-self.log_lift / self.se / math.sqrt(2))


def random_effects(studies: list[Study]) -> Pooled:
    if not studies:
        raise ValueError("No studies to pool.")
    y = [s.log_lift for s in studies]
    v = [s.se * s.se for s in studies]
    w = [1 / x for x in v]
    fixed = sum(wi * yi for wi, yi in zip(w, y, strict=True)) / sum(w)
    q = sum(wi * (yi - fixed) ** 2 for wi, yi in zip(w, y, strict=True))
    df = len(studies) - 1
    c = sum(w) - sum(wi * wi for wi in w) / sum(w)
    tau2 = max(0.0, (q - df) / c) if df > 0 else 0.0
    w_star = [1 / (vi + tau2) for vi in v]
    mu = sum(wi * yi for wi, yi in zip(w_star, y, strict=True)) / sum(w_star)
    se = math.sqrt(1 / sum(w_star))
    i_squared = max(0.0, (q - df) / q) if q > 0 and df > 0 else 0.0
    total = sum(w_star)
    return Pooled(
        log_lift=mu,
        se=se,
        tau=math.sqrt(tau2),
        i_squared=i_squared,
        q=q,
        weights=tuple(wi / total for wi in w_star),
    )
