"""What to do next: continue, conclude or stop, with the reason in a sentence.

- `stop` when a guardrail trips: some variant is worse than control on a guardrail metric by
  more than its margin with probability above GUARDRAIL_PROBABILITY. Harm outranks everything.
- `continue` while the sample ratio is off: a broken split makes every other number suspect.
- `conclude` when choosing the leader (highest P(best) on the primary metric) risks an
  expected loss below the experiment's threshold of caring: more data could change the
  decision only by amounts nobody cares about (the expected-loss rule of Chris Stucchio's
  Bayesian A/B testing, as GrowthBook and VWO use it).
- `continue` otherwise.
"""

from dataclasses import dataclass

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
class Recommendation:
    action: str
    reason: str
    variant: str | None = None


def recommend(
    *,
    metric: str,
    variants: list[str],
    units: list[int],
    prob_best: list[float | None],
    expected_loss: list[float | None],
    threshold: float,
    guardrails: list[GuardrailCheck],
    srm_flag: bool,
    srm_p_value: float | None = None,
) -> Recommendation:
    tripped = [g for g in guardrails if g.tripped]
    if tripped:
        worst = max(tripped, key=lambda g: g.prob_worse)
        others = f" ({len(tripped) - 1} more guardrail checks tripped)" if len(tripped) > 1 else ""
        return Recommendation(
            "stop",
            f"Guardrail tripped: '{worst.variant}' is worse than control on '{worst.metric}' by "
            f"more than {worst.margin:g} with probability {worst.prob_worse:.3f} (above "
            f"{GUARDRAIL_PROBABILITY}){others}.",
            worst.variant,
        )
    if srm_flag:
        p = f" (p = {srm_p_value:.2g})" if srm_p_value is not None else ""
        return Recommendation(
            "continue",
            f"Sample ratio mismatch{p}: units did not arrive in the shares the weights should "
            "give. Find the cause before trusting or concluding these results.",
        )
    if not variants or min(units) == 0:
        return Recommendation("continue", "Not every variant has units yet.")
    candidates = [
        (p, loss, v)
        for p, loss, v in zip(prob_best, expected_loss, variants, strict=True)
        if p is not None and loss is not None
    ]
    p, loss, leader = max(candidates)
    if loss < threshold:
        return Recommendation(
            "conclude",
            f"'{leader}' leads on '{metric}' (P(best) {p:.3f}); choosing it risks an expected "
            f"loss of {loss:.3g}, below the threshold of caring {threshold:g}.",
            leader,
        )
    return Recommendation(
        "continue",
        f"The leader '{leader}' on '{metric}' (P(best) {p:.3f}) still risks an expected loss of "
        f"{loss:.3g}, above the threshold of caring {threshold:g}: keep collecting.",
        leader,
    )
