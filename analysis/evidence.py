"""Evidence across experiments: verdicts and the random-effects meta-analysis of lifts.

Each published learning carries a relative lift and its 95% interval. On the log scale,
log(1 + lift) is close to Normal with standard error (log(1 + high) − log(1 + low)) / (2·1.96).
The pooled effect of a factor level is the DerSimonian-Laird random-effects mean: experiments
differ (audiences, seasons, copy), so besides each one's sampling error there is a spread τ
between them, estimated from Cochran's Q and added to every variance before weighting.
"""

import math
from dataclasses import dataclass

Z = 1.959963984540054
WIN_PROBABILITY = 0.95
FLAT_MARGIN = 0.02


@dataclass(frozen=True)
class Thresholds:
    """A learning is `flat` when its whole 95% interval lies within ±flat_margin (judged
    first: a precisely measured +1% is negligible, not a win), else a `win` when P(better) ≥
    win_probability, a `loss` when P(better) ≤ 1 − win_probability, and `inconclusive`
    otherwise."""

    win_probability: float = WIN_PROBABILITY
    flat_margin: float = FLAT_MARGIN

    def __post_init__(self):
        if not 0.5 < self.win_probability < 1 or not 0 < self.flat_margin < 1:
            raise ValueError("Need 0.5 < win_probability < 1 and 0 < flat_margin < 1.")


def verdict(prob_better: float, low: float, high: float, thresholds: Thresholds = Thresholds()):
    if -thresholds.flat_margin <= low and high <= thresholds.flat_margin:
        return "flat"
    if prob_better >= thresholds.win_probability:
        return "win"
    if prob_better <= 1 - thresholds.win_probability:
        return "loss"
    return "inconclusive"


@dataclass(frozen=True)
class Study:
    name: str
    lift: float
    low: float
    high: float


@dataclass(frozen=True)
class Pooled:
    lift: float
    low: float
    high: float
    tau: float  # between-experiment spread of log(1 + lift)
    i_squared: float  # share of the variation that is between experiments
    q: float
    weights: tuple[float, ...]  # each study's share of the pooled estimate
    se: float = 0.0  # of the pooled log(1 + lift)

    @property
    def prob_positive(self) -> float:
        """P(lift > 0) under the pooled Normal on log(1 + lift)."""
        if self.se <= 0:
            return float(self.lift > 0)
        return 0.5 * math.erfc(-math.log1p(self.lift) / self.se / math.sqrt(2))


def log_effect(study: Study) -> tuple[float, float]:
    """(log(1 + lift), its standard error) from the lift's 95% interval."""
    if not (-1 < study.low <= study.high) or study.high == study.low:
        raise ValueError(f"Study {study.name!r} needs −1 < low < high.")
    se = (math.log1p(study.high) - math.log1p(study.low)) / (2 * Z)
    return math.log1p(study.lift), se


def random_effects(studies: list[Study]) -> Pooled:
    if not studies:
        raise ValueError("No studies to pool.")
    effects = [log_effect(s) for s in studies]
    y = [e for e, _ in effects]
    v = [se * se for _, se in effects]
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
        lift=math.expm1(mu),
        low=math.expm1(mu - Z * se),
        high=math.expm1(mu + Z * se),
        tau=math.sqrt(tau2),
        i_squared=i_squared,
        q=q,
        weights=tuple(wi / total for wi in w_star),
        se=se,
    )
