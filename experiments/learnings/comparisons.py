"""Where a publication's comparisons come from, one dict each (segment, factor, level vs the
baseline level, lift, log-lift, P(better), units, method, notes) for publish.py to judge.

An experiment whose variants form a factorial design gets one comparison per (segment, factor,
level vs the control's level), any other one per variant vs control. The conjugate comparisons
are the results' own: within allocation periods (and, for `all`, within segments) wherever a
bandit's weights differed, standardised to the units' shares, never the counts pooled across
cells a bandit fed unevenly. A converged PyMC job's are read from its result.
"""

import numpy as np
from sqlmodel import Session

from analysis.contrasts import group_contrast, rate_draws, variant_log_ratios
from analysis.evidence import interval_log_lift
from analysis.pymc_models import factorial_problem
from experiments.learnings.record import OWN_DATA, VARIANT_FACTOR, Note
from experiments.statistics.comparisons import metric_strata
from experiments.storage.tables import AnalysisJob, Experiment, Metric


def from_conjugate(
    session: Session, experiment: Experiment, metric: Metric, notes: tuple[Note, ...] = ()
) -> list[dict]:
    """From the results' own comparisons: each segment within its allocation periods, `all`
    within period × segment cells, standardised to their unit shares (see
    experiments/statistics/comparisons.py). A variant's learning is its row of the results; a
    factor level's compares the mean rate of the variants with the level with that of their
    twins, on the same per-arm estimates (analysis/contrasts.py). An experiment that started
    from the registry's prior is read from its own data: the registry already holds what that
    prior knew."""
    learned = bool(experiment.priors) and experiment.prior == "learnings"
    layout, strata = metric_strata(
        session=session, experiment=experiment, metric=metric, own_data_only=learned
    )
    variants = layout.arms[: layout.variants]
    control = layout.control
    factors = [dict(v.factors) for v in experiment.variants]
    factorial = factorial_problem(factors, control) is None
    notes = [*notes, Note.of(OWN_DATA)] if learned else list(notes)
    found = []
    for stratum in strata:
        n = stratum.units[:, : layout.variants].sum(axis=0)
        c = stratum.conversions[:, : layout.variants].sum(axis=0)
        if n.sum() == 0:
            continue
        rng = np.random.default_rng(stratum.seed)
        if factorial:
            draws = rate_draws(
                stratum.units,
                stratum.conversions,
                stratify=stratum.stratified,
                prior=stratum.prior,
                rng=rng,
            )
            for factor, level, base, with_level, without in _level_pairs(factors, control):
                contrast = group_contrast(
                    draws,
                    with_level,
                    without,
                    baseline_conversions=float(c[without].sum()),
                    higher_is_better=metric.higher_is_better,
                )
                found.append(
                    _found(
                        stratum.segment,
                        factor,
                        level,
                        base,
                        contrast.lift,
                        contrast.prob_better,
                        contrast.log_ratio,
                        units=(n[without].sum(), n[with_level].sum()),
                        baseline_rate=_mean_rate(stratum, draws, without),
                        notes=notes,
                    )
                )
            continue
        summaries = stratum.analysed.summaries
        log_ratios = variant_log_ratios(
            stratum.units,
            stratum.conversions,
            control=control,
            stratify=stratum.stratified,
            prior=stratum.prior,
        )
        for i in range(layout.variants):
            if i == control:
                continue
            found.append(
                _found(
                    stratum.segment,
                    VARIANT_FACTOR,
                    variants[i],
                    variants[control],
                    summaries[i].lift,
                    summaries[i].prob_beat_control,
                    log_ratios[i] if summaries[i].lift is not None else None,
                    units=(n[control], n[i]),
                    baseline_rate=summaries[control].rate.mean,
                    channel=factors[i].get("channel"),
                    notes=notes,
                )
            )
    return found


def _mean_rate(stratum, draws: np.ndarray, arms: list[int]) -> float:
    """The arms' mean posterior rate: the results' exact means where they are pooled (cheap,
    and the same in every segment that holds the same cells), else the draws'."""
    if stratum.stratified:
        return float(draws[:, arms].mean())
    return float(np.mean([stratum.analysed.summaries[j].rate.mean for j in arms]))


def _level_pairs(factors: list[dict], control: int):
    """(factor, level, baseline level, variants with the level, their twins at the baseline)."""
    baseline = factors[control]
    for factor in baseline:
        for level in sorted({f[factor] for f in factors} - {baseline[factor]}):
            with_level, without = [], []
            for i, f in enumerate(factors):
                if f[factor] == level:
                    twin = {**f, factor: baseline[factor]}
                    if twin in factors:
                        with_level.append(i)
                        without.append(factors.index(twin))
            if with_level:
                yield factor, level, baseline[factor], with_level, without


def _found(
    segment,
    factor,
    level,
    base,
    lift,
    prob,
    log_ratio,
    *,
    units,
    baseline_rate,
    notes,
    channel=None,
) -> dict:
    """A conjugate comparison; units = (the baseline side's, the level's)."""
    return {
        "segment": segment,
        "factor": factor,
        "level": level,
        "baseline_level": base,
        "lift": (lift.mean, lift.low, lift.high) if lift is not None else (None, None, None),
        "lift_median": lift.median if lift is not None else None,
        "log_lift": (log_ratio.mean, log_ratio.sd) if log_ratio is not None else (None, None),
        "prob_better": prob,
        "units": int(sum(units)),
        "level_units": int(units[1]),
        "baseline_rate": float(baseline_rate),
        "method": "beta-binomial",
        "channel": channel if channel is not None else (level if factor == "channel" else None),
        "notes": tuple(notes),
    }


def from_factorial_job(experiment: Experiment, metric: Metric, job: AnalysisJob) -> list[dict]:
    """From a converged factorial PyMC job: each segment's main effect of each factor level."""
    found = []
    for block in job.result.get("segments", []):
        for effect in block.get("main_effects", []):
            if effect.get("lift") is None:
                continue
            lift = effect["lift"]
            prob = effect["prob_better"]
            if not metric.higher_is_better:
                prob = 1 - prob
            found.append(
                {
                    "segment": block["segment"],
                    "factor": effect["factor"],
                    "level": effect["level"],
                    "baseline_level": effect["baseline_level"],
                    "lift": (lift["mean"], lift["ci"][0], lift["ci"][1]),
                    "lift_median": lift.get("median"),
                    "log_lift": _interval_log_lift(*lift["ci"]),
                    "prob_better": prob,
                    "units": block.get("units"),
                    "level_units": None,
                    "baseline_rate": None,
                    "method": "factorial",
                    "channel": effect["level"] if effect["factor"] == "channel" else None,
                }
            )
    return found


def from_hierarchical_job(experiment: Experiment, metric: Metric, job: AnalysisJob) -> list[dict]:
    """From a converged hierarchical PyMC job: each segment's variants against its control."""
    factors = {v.key: dict(v.factors) for v in experiment.variants}
    found = []
    for block in job.result.get("segments", []):
        rows = block["variants"]
        control = next(r for r in rows if r["lift"] is None)
        for row in rows:
            if row["lift"] is None:
                continue
            prob = row["prob_beat_control"]
            if not metric.higher_is_better:
                prob = 1 - prob
            found.append(
                {
                    "segment": block["segment"],
                    "factor": VARIANT_FACTOR,
                    "level": row["variant"],
                    "baseline_level": control["variant"],
                    "lift": (row["lift"]["mean"], row["lift"]["ci"][0], row["lift"]["ci"][1]),
                    "lift_median": row["lift"].get("median"),
                    "log_lift": _interval_log_lift(*row["lift"]["ci"]),
                    "prob_better": prob,
                    "units": row["units"] + control["units"],
                    "level_units": row["units"],
                    "baseline_rate": control["rate"]["mean"],
                    "method": "hierarchical",
                    "channel": factors.get(row["variant"], {}).get("channel"),
                }
            )
    return found


def _interval_log_lift(low, high) -> tuple:
    if low is None or high is None or not -1 < low < high:
        return None, None
    return interval_log_lift(low, high)
