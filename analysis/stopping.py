"""What to do next: continue, conclude or stop, with the reason in a sentence and a code.

- `stop` when a guardrail trips: some variant is worse than control on a guardrail metric by
  more than its margin with probability above GUARDRAIL_PROBABILITY. Harm outranks everything.
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

from analysis.summary import ArmSummary, Interval

# Why a precision condition as well as the loss: a leader a few conversions ahead already has
# a small expected loss, and over daily looks the loss rule alone (at 1% of the control's mean)
# chooses a 15%-worse variant 4-7% of the time at rates of 0.5-2%, early, on a lucky streak.
# Requiring the leader's and the control's 95% interval to lie within ±20% of the mean (about
# 100 conversions each for a rare binary event; the same condition for a continuous metric)
# brings that to 1-3% (bench/bench_daily_looks.py).
MIN_PRECISION = 0.2

GUARDRAIL_PROBABILITY = 0.95


@dataclass(frozen=True)
class GuardrailCheck:
    metric: str
    variant: str
    margin: float
    prob_worse: float | None

    @property
    def tripped(self) -> bool:
        return self.prob_worse is not None and self.prob_worse > GUARDRAIL_PROBABILITY


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
    # A stable name for the reason: guardrail_tripped, sample_ratio_mismatch, empty_arm,
    # imprecise, loss_above_threshold or negligible_loss.
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
        worst = max(tripped, key=lambda g: g.prob_worse)
        others = f" ({len(tripped) - 1} more guardrail checks tripped)" if len(tripped) > 1 else ""
        return Recommendation(
            "stop",
            "guardrail_tripped",
            f"Guardrail tripped: '{worst.variant}' is worse than control on '{worst.metric}' by "
            f"more than {worst.margin:g} with probability {worst.prob_worse:.3f} (above "
            f"{GUARDRAIL_PROBABILITY}){others}.",
            worst.variant,
        )
    if srm_flag:
        p = f" (p = {srm_p_value:.2g})" if srm_p_value is not None else ""
        return Recommendation(
            "continue",
            "sample_ratio_mismatch",
            f"Sample ratio mismatch{p}: units did not arrive in the shares the weights should "
            "give. Find the cause before trusting or concluding these results.",
        )
    if not variants or min(a.units for a in arms) == 0:
        return Recommendation("continue", "empty_arm", "Not every variant has units yet.")
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
            "imprecise",
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
            "negligible_loss",
            f"'{leader}' leads on '{metric}' (P(best) {p:.3f}); choosing it risks {risk}, "
            f"below {threshold.describe(control_mean)}.",
            **found,
        )
    return Recommendation(
        "continue",
        "loss_above_threshold",
        f"The leader '{leader}' on '{metric}' (P(best) {p:.3f}) still risks {risk}, above "
        f"{threshold.describe(control_mean)}: keep collecting.",
        **found,
    )


def known_precisely(rate: Interval) -> bool:
    """The 95% interval lies within ±MIN_PRECISION of the mean (a mean of 0 never does)."""
    return rate.high - rate.low <= 2 * MIN_PRECISION * abs(rate.mean) and rate.mean != 0
