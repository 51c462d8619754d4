"""What to do next: continue, conclude or stop, with the reason in a sentence and a code.

- `stop` when a guardrail trips: the evidence that some variant is worse than control on a
  guardrail metric by more than its margin crosses an always-valid boundary (`harm_p_value`).
  Harm outranks everything.
- `continue` while the sample ratio is off: a broken split makes every other number suspect.
- `continue` until the leader (highest P(best) on the primary metric) and the control are each
  known within ±MIN_PRECISION of their mean.
- `conclude` when choosing the leader risks an expected loss below the threshold of caring:
  more data could change the decision only by amounts nobody cares about (the expected-loss
  rule of Chris Stucchio's Bayesian A/B testing, as GrowthBook and VWO use it).
- `continue` otherwise.

People read results every day and act on the first `conclude`, so each rule is judged by what
it does under daily looks (bench/bench_daily_looks.py).
"""

from dataclasses import dataclass

import numpy as np
from scipy import special

from analysis.summary import ArmSummary, Interval

# Why a precision condition as well as the loss: a leader a few conversions ahead already has
# a small expected loss, and over daily looks the loss rule alone (at 1% of the control's mean)
# chooses a 15%-worse variant 4-7% of the time at rates of 0.5-2%, early, on a lucky streak.
# Requiring the leader's and the control's 95% interval to lie within ±20% of the mean (about
# 100 conversions each for a rare binary event; the same condition for a continuous metric)
# brings that to 1-3% (bench/bench_daily_looks.py).
MIN_PRECISION = 0.2

# Guardrails. An arm no worse than control by more than the margin trips with probability at
# most GUARDRAIL_FALSE_TRIP_RATE over the experiment's whole life, however often anyone looks
# (every 15 minutes for a bandit's reweights); past GUARDRAIL_CONCLUSIVE_RATE the harm is
# taken as settled and a bandit switches the arm off.
GUARDRAIL_FALSE_TRIP_RATE = 0.05
GUARDRAIL_CONCLUSIVE_RATE = 0.001
# The mixture over harms that the always-valid test weighs: half-Normal with a standard
# deviation of this share of the arms' mean, putting its power on harms of tens of percent,
# what a guardrail is for. Simulated when it was chosen (+30% harm at a 0.5% rate, 1,000 units
# an arm a day): tripped within 28 days 17%, 40%, 45%, 43% of the time at 0.1, 0.2, 0.3, 0.5.
HARM_MIXTURE_SCALE = 0.3

# The recommendation's codes, one per rule above (its `reason` says the same in a sentence).
GUARDRAIL_TRIPPED = "guardrail_tripped"
SAMPLE_RATIO_MISMATCH = "sample_ratio_mismatch"
EMPTY_ARM = "empty_arm"
IMPRECISE = "imprecise"
NEGLIGIBLE_LOSS = "negligible_loss"
LOSS_ABOVE_THRESHOLD = "loss_above_threshold"
RECOMMENDATION_CODES = (
    GUARDRAIL_TRIPPED,
    SAMPLE_RATIO_MISMATCH,
    EMPTY_ARM,
    IMPRECISE,
    LOSS_ABOVE_THRESHOLD,
    NEGLIGIBLE_LOSS,
)
# A guardrail check's verdict: its flags (`tripped`, `conclusive`) as one code.
HARM_CONCLUSIVE = "harm_conclusive"
TRIPPED = "tripped"
WITHIN_MARGIN = "within_margin"
NO_EVIDENCE = "no_evidence"
GUARDRAIL_VERDICTS = (WITHIN_MARGIN, TRIPPED, HARM_CONCLUSIVE, NO_EVIDENCE)


def guardrail_p_value(
    control_mean, control_sd, arm_mean, arm_sd, *, margin: float, higher_is_better: bool
) -> np.ndarray:
    """Always-valid p-value of "the arm is no worse than control by more than `margin`", from
    the two arms' posterior means and standard deviations (numbers or arrays).

    The estimated harm (control − arm when higher is better, arm − control otherwise) is taken
    as Normal with the sum of the two variances. The statistic is a one-sided mixture
    sequential probability ratio test (Robbins 1970; Johari et al. 2017, "Always valid
    inference"): the likelihood ratio of that estimate for a harm θ above the margin against
    the margin itself, averaged over θ − margin ~ half-Normal(0, τ²), τ = HARM_MIXTURE_SCALE
    × the arms' mean. In closed form, with z = (harm − margin) / sd and r = τ² / variance,

        Λ = 2 (1 + r)^(−1/2) Φ(z √(r / (1 + r))) exp(z² r / (2 (1 + r))).

    While the true harm is at most the margin, Λ is a nonnegative supermartingale in the
    information (1 / variance), so by Ville's inequality it ever reaches 1/α with probability
    at most α, however many looks. The p-value is min(1, 1/Λ) at this look. The Normal
    estimate and the plug-in scale make this approximate for small counts; the simulation
    measures it (bench/bench_daily_looks.py, tests: 0.5-2% of A/A arms trip within 28 days, daily
    looks or every 15 minutes).
    """
    sign = 1.0 if higher_is_better else -1.0
    control_mean, control_sd = np.asarray(control_mean, float), np.asarray(control_sd, float)
    arm_mean, arm_sd = np.asarray(arm_mean, float), np.asarray(arm_sd, float)
    return _mixture_p_value(
        harm=sign * (control_mean - arm_mean),
        variance=control_sd**2 + arm_sd**2,
        margin=margin,
        scale=(np.abs(control_mean) + np.abs(arm_mean)) / 2,
    )


def _mixture_p_value(harm, variance, margin, scale) -> np.ndarray:
    harm, variance, scale = np.broadcast_arrays(
        np.asarray(harm, float), np.asarray(variance, float), np.asarray(scale, float)
    )
    tau = HARM_MIXTURE_SCALE * np.abs(scale)
    informative = (variance > 0) & (tau > 0) & np.isfinite(harm)
    p = np.ones(harm.shape)
    v, t = variance[informative], tau[informative]
    r = t * t / v
    z = (harm[informative] - margin) / np.sqrt(v)
    log_ratio = (
        np.log(2.0)
        - 0.5 * np.log1p(r)
        + special.log_ndtr(z * np.sqrt(r / (1 + r)))
        + z * z * r / (2 * (1 + r))
    )
    p[informative] = np.minimum(1.0, np.exp(-log_ratio))
    return p


@dataclass(frozen=True)
class GuardrailCheck:
    metric: str
    variant: str
    margin: float
    # P(worse than control by more than the margin) now: descriptive, not a stopping rule.
    prob_worse: float | None
    p_value: float | None

    @property
    def tripped(self) -> bool:
        return self.p_value is not None and self.p_value <= GUARDRAIL_FALSE_TRIP_RATE

    @property
    def conclusive(self) -> bool:
        return self.p_value is not None and self.p_value <= GUARDRAIL_CONCLUSIVE_RATE

    @property
    def verdict(self) -> str:
        """HARM_CONCLUSIVE, TRIPPED (not yet conclusive), WITHIN_MARGIN, or NO_EVIDENCE where
        there is no p-value (no units, or no spread to measure harm against)."""
        if self.conclusive:
            return HARM_CONCLUSIVE
        if self.tripped:
            return TRIPPED
        if self.p_value is None or np.isnan(self.p_value):
            return NO_EVIDENCE
        return WITHIN_MARGIN


@dataclass(frozen=True)
class ThresholdOfCaring:
    """The expected loss below which the choice no longer matters: `relative`, a share of the
    control's mean, unless the experiment set `absolute`, an amount in the metric's units."""

    relative: float
    absolute: float | None = None

    def __post_init__(self):
        if not self.relative > 0 or (self.absolute is not None and not self.absolute > 0):
            raise ValueError("A threshold of caring is positive.")

    def in_units(self, control_mean: float) -> float:
        if self.absolute is not None:
            return self.absolute
        return self.relative * abs(control_mean)

    def describe(self, control_mean: float) -> str:
        if self.absolute is not None:
            return f"the threshold of caring {self.absolute:g}"
        return (
            f"the threshold of caring {self.relative:.2%} of the control's mean "
            f"({self.in_units(control_mean):.3g})"
        )


@dataclass(frozen=True)
class Recommendation:
    action: str
    # The reason as a stable name, one of RECOMMENDATION_CODES.
    code: str
    reason: str
    variant: str | None = None
    # For the leader named: P(it is not the best arm), and what choosing it risks.
    prob_wrong_choice: float | None = None
    expected_loss: float | None = None
    relative_expected_loss: float | None = None
    # The threshold of caring in the metric's units, at the control's current mean.
    threshold: float | None = None


def recommend(
    *,
    metric: str,
    variants: list[str],
    arms: list[ArmSummary],
    control: int,
    threshold: ThresholdOfCaring,
    guardrails: list[GuardrailCheck],
    srm_flag: bool,
    srm_p_value: float | None = None,
) -> Recommendation:
    """The advice, from the primary metric's summaries of the variants (not the holdout)."""
    tripped = [g for g in guardrails if g.tripped]
    if tripped:
        worst = min(tripped, key=lambda g: g.p_value)
        others = f" ({len(tripped) - 1} more guardrail checks tripped)" if len(tripped) > 1 else ""
        settled = (
            " The harm is conclusive: a bandit gives it no more units."
            if worst.conclusive
            else f" Not yet conclusive (p > {GUARDRAIL_CONCLUSIVE_RATE:g}): a bandit keeps it at "
            "its floor weight, so that the trip can clear or the harm become conclusive."
        )
        return Recommendation(
            "stop",
            GUARDRAIL_TRIPPED,
            f"Guardrail tripped: '{worst.variant}' is worse than control on '{worst.metric}' by "
            f"more than {worst.margin:g} (always-valid p = {worst.p_value:.2g}, at most "
            f"{GUARDRAIL_FALSE_TRIP_RATE:g}: a harmless variant gets here with probability "
            f"{GUARDRAIL_FALSE_TRIP_RATE:.0%} at most, however often the results are read)"
            f"{others}.{settled}",
            worst.variant,
        )
    if srm_flag:
        p = f" (p = {srm_p_value:.2g})" if srm_p_value is not None else ""
        return Recommendation(
            "continue",
            SAMPLE_RATIO_MISMATCH,
            f"Sample ratio mismatch{p}: units did not arrive in the shares the weights should "
            "give. Find the cause before trusting or concluding these results.",
        )
    if not variants or min(a.units for a in arms) == 0:
        return Recommendation("continue", EMPTY_ARM, "Not every variant has units yet.")
    candidates = [
        (a.prob_best, a.expected_loss, v, i)
        for i, (a, v) in enumerate(zip(arms, variants, strict=True))
        if a.prob_best is not None and a.expected_loss is not None
    ]
    p, loss, leader, at = max(candidates)
    control_mean = arms[control].rate.mean
    units = threshold.in_units(control_mean)
    relative = loss / abs(control_mean) if control_mean else None
    found = {
        "variant": leader,
        "prob_wrong_choice": 1.0 - p,
        "expected_loss": loss,
        "relative_expected_loss": relative,
        "threshold": units,
    }
    vague = [variants[i] for i in dict.fromkeys((at, control)) if not known_precisely(arms[i].rate)]
    if vague:
        listed = " and ".join(f"'{v}'" for v in vague)
        return Recommendation(
            "continue",
            IMPRECISE,
            f"The leader '{leader}' on '{metric}' (P(best) {p:.3f}) cannot be chosen yet: "
            f"{listed} not known within ±{MIN_PRECISION:.0%} of the mean (95% interval; "
            "about 100 conversions for a binary metric): keep collecting.",
            **found,
        )
    risk = f"an expected loss of {loss:.3g}" + (
        f" ({relative:.2%} of the control's mean)" if relative is not None else ""
    )
    if loss < units:
        return Recommendation(
            "conclude",
            NEGLIGIBLE_LOSS,
            f"'{leader}' leads on '{metric}' (P(best) {p:.3f}); choosing it risks {risk}, "
            f"below {threshold.describe(control_mean)}.",
            **found,
        )
    return Recommendation(
        "continue",
        LOSS_ABOVE_THRESHOLD,
        f"The leader '{leader}' on '{metric}' (P(best) {p:.3f}) still risks {risk}, above "
        f"{threshold.describe(control_mean)}: keep collecting.",
        **found,
    )


def known_precisely(rate: Interval) -> bool:
    """The 95% interval lies within ±MIN_PRECISION of the mean (a mean of 0 never does)."""
    return rate.high - rate.low <= 2 * MIN_PRECISION * abs(rate.mean) and rate.mean != 0
