"""Priors for new experiments: what the registry has learned, as a Beta prior per segment and
variant for an experiment that starts from it (`"prior": "learnings"`).
"""

from sqlalchemy import select
from sqlmodel import Session

from experiments.learnings.evidence import evidence
from experiments.storage.tables import Experiment, Learning
from experiments.vocabulary import ALL_SEGMENT, primary_metric


def learned_priors(*, session: Session, experiment: Experiment) -> dict | None:
    """Per segment and variant, a Beta prior for the primary metric worth `prior_units` units:
    its mean is the registry's baseline rate for the segment (the units-weighted mean of the
    published baselines) times (1 + pooled lift) of each factor level the variant changes from
    the control, pooled against the same baseline level. A segment the registry has not seen
    uses its evidence for all users; with no baseline at all, there is no learned prior."""
    primary = primary_metric(experiment).key
    control = next(v for v in experiment.variants if v.key == experiment.control)
    units = experiment.prior_units
    answer = {"metric": primary, "units": units, "segments": {}, "evidence": []}
    for segment in [ALL_SEGMENT, *[s.key for s in experiment.segments], "other"]:
        baseline = _pooled_baseline(session, primary, segment)
        source = segment
        if baseline is None:
            baseline, source = _pooled_baseline(session, primary, ALL_SEGMENT), ALL_SEGMENT
        if baseline is None:
            continue
        arms = {}
        for variant in experiment.variants:
            mean = baseline
            for factor, level in variant.factors.items():
                base = control.factors.get(factor)
                if level == base:
                    continue
                pooled = evidence(
                    session=session,
                    segment=source,
                    metric=primary,
                    factor=factor,
                    level=level,
                    baseline_level=base,
                )["pooled"]
                if pooled is None:
                    continue
                lift = pooled["lift"]["mean"]
                mean *= 1 + lift
                answer["evidence"].append(
                    {
                        "segment": segment,
                        "from_segment": source,
                        "factor": factor,
                        "level": level,
                        "baseline_level": base,
                        "lift": lift,
                        "experiments": pooled["experiments"],
                    }
                )
            mean = min(max(mean, 1e-4), 1 - 1e-4)
            arms[variant.key] = [round(mean * units, 6), round((1 - mean) * units, 6)]
        answer["segments"][segment] = {"baseline": baseline, "from_segment": source, "arms": arms}
    return answer if answer["segments"] else None


def _pooled_baseline(session: Session, metric: str, segment: str) -> float | None:
    """The segment's baseline rate for the metric: each experiment's units-weighted mean of its
    published baselines, weighted again by the units behind it; None if none is published."""
    rows = session.execute(
        select(Learning.experiment_key, Learning.baseline_rate, Learning.units).where(
            Learning.source == "published",
            Learning.metric == metric,
            Learning.segment == segment,
            Learning.baseline_rate.is_not(None),
        )
    ).all()
    if not rows:
        return None
    per_experiment: dict[str, tuple[float, float]] = {}
    for key, rate, units in rows:
        weight = float(units or 1)
        total, mass = per_experiment.get(key, (0.0, 0.0))
        per_experiment[key] = (total + rate * weight, mass + weight)
    rates = [total / mass for total, mass in per_experiment.values()]
    weights = [mass for _, mass in per_experiment.values()]
    return sum(r * w for r, w in zip(rates, weights, strict=True)) / sum(weights)
