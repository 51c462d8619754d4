"""Evidence across experiments: the pooled effect of a factor level, a random-effects
meta-analysis of the published learnings that measured it (analysis/evidence.py).
"""

from sqlalchemy import select
from sqlmodel import Session

from analysis.evidence import Study, random_effects
from experiments.storage.tables import Learning


def evidence(
    *,
    session: Session,
    segment: str,
    metric: str,
    factor: str,
    level: str,
    baseline_level: str | None = None,
) -> dict:
    """The pooled effect of a factor level across experiments (random effects on each
    learning's posterior mean and sd of θ = log(p_level / p_baseline)), optionally only
    against one baseline level."""
    conditions = [
        Learning.source == "published",
        Learning.segment == segment,
        Learning.metric == metric,
        Learning.factor == factor,
        Learning.level == level,
        # A learning whose control had no conversion has no lift mean (the ratio has none):
        # it says nothing a pooled estimate could use.
        Learning.lift_mean.is_not(None),
        Learning.lift_low > -1,
        Learning.lift_high > Learning.lift_low,
    ]
    if baseline_level is not None:
        conditions.append(Learning.baseline_level == baseline_level)
    rows = (
        session.execute(select(Learning).where(*conditions).order_by(Learning.experiment_key))
        .scalars()
        .all()
    )
    answer = {
        "segment": segment,
        "metric": metric,
        "factor": factor,
        "level": level,
        "experiments": [],
        "pooled": None,
        "spread": None,
        "method": "random effects (DerSimonian-Laird) on θ = log(p_level / p_baseline), from "
        "each learning's posterior mean and sd of θ; the pooled lift is exp(θ) − 1",
    }
    if not rows:
        answer["note"] = "No published learning matches: there is no evidence to pool yet."
        return answer
    studies = [_study(r) for r in rows]
    pooled = random_effects(studies)
    answer["experiments"] = [
        {
            "experiment": r.experiment_key,
            "lift": {"mean": r.lift_mean, "ci": [r.lift_low, r.lift_high]},
            "log_lift": {"mean": study.log_lift, "sd": study.se},
            "units": r.units,
            "verdict": r.verdict,
            "weight": round(w, 4),
        }
        for r, study, w in zip(rows, studies, pooled.weights, strict=True)
    ]
    answer["pooled"] = {
        "lift": {"mean": pooled.lift, "ci": [pooled.low, pooled.high]},
        "log_lift": {"mean": pooled.log_lift, "sd": pooled.se},
        "experiments": len(rows),
        "units": int(sum(r.units or 0 for r in rows)),
        "prob_better": pooled.prob_positive,
    }
    answer["spread"] = {"tau": pooled.tau, "i_squared": pooled.i_squared, "q": pooled.q}
    return answer


def _study(learning: Learning) -> Study:
    """A learning's θ: as stored, or (published before it was) read from its interval."""
    name = learning.experiment_key or str(learning.id)
    if learning.log_lift_mean is not None and (learning.log_lift_sd or 0) > 0:
        return Study(name, learning.log_lift_mean, learning.log_lift_sd)
    return Study.from_interval(name, learning.lift_low, learning.lift_high)
