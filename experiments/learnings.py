"""The learnings registry: publish what an experiment showed, write learnings by hand, query
them, and pool the evidence for a factor level across experiments.

Publishing reads the latest results of each binary metric: a finished PyMC job where there is
one for that metric (factorial: one learning per factor level; hierarchical: per variant) and
its sampler converged, else the conjugate results (a job that did not converge is named in
the learnings' notes). An experiment whose variants form a factorial design gets one
learning per (segment, metric, factor, level vs the control's level), any other one per
variant vs control. The conjugate comparisons are the results' own: within allocation periods
(and, for `all`, within segments) wherever a bandit's weights differed, standardised to the
units' shares, never the counts pooled across cells a bandit fed unevenly.
Republishing replaces the experiment's published learnings in one transaction, keeping the
tags earlier publications gave them; a unique index keeps one per (experiment, segment, metric,
factor, level) even under concurrent publishing.
"""

import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from analysis.contrasts import group_contrast, rate_draws, variant_log_ratios
from analysis.discovery import always_valid_p, discoveries
from analysis.evidence import Study, Thresholds, interval_log_lift, random_effects, verdict
from analysis.pymc_models import factorial_problem
from experiments.clock import utcnow
from experiments.errors import Conflict, InvalidSpec, NotFound
from experiments.statistics.comparisons import metric_strata
from experiments.storage.repository import get_experiment
from experiments.storage.tables import AnalysisJob, Experiment, Learning, Metric
from experiments.vocabulary import ALL_SEGMENT, primary_metric

VARIANT_FACTOR = "variant"
OWN_DATA_NOTE = (
    "From this experiment's own data: its results start from the registry's prior, which "
    "the registry already holds."
)
SORTS = ("date", "-date", "lift", "-lift")
# A PyMC job feeds learnings only if its sampler converged: rank-normalised split R-hat at most
# 1.01, no divergent transition, and a bulk ESS of at least 400, 100 per chain of the four
# (Vehtari et al. 2021, "Rank-normalization, folding, and localization").
MAX_RHAT = 1.01
MIN_ESS = 400
EXPORT_FIELDS = (
    "id",
    "source",
    "experiment_key",
    "metric",
    "segment",
    "factor",
    "level",
    "baseline_level",
    "channel",
    "lift_mean",
    "lift_low",
    "lift_high",
    "log_lift_mean",
    "log_lift_sd",
    "prob_better",
    "units",
    "method",
    "always_valid_p",
    "comparisons",
    "false_discovery_rate",
    "verdict",
    "summary",
    "hypothesis",
    "notes",
    "tags",
    "links",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class Filters:
    segment: str | None = None
    metric: str | None = None
    factor: str | None = None
    level: str | None = None
    channel: str | None = None
    experiment: str | None = None
    verdict: str | None = None
    tags: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    source: str | None = None


# -- publishing --------------------------------------------------------------------------------


def publish(
    *,
    session: Session,
    key: str,
    thresholds: Thresholds | None = None,
    tags=(),
    commit: bool = True,
) -> list[Learning]:
    """Publish (or republish) the experiment's learnings from its latest results, tagged with
    `tags` and every tag of the learnings they replace; with `commit=False`, as part of the
    caller's transaction (concluding publishes)."""
    thresholds = thresholds or Thresholds()
    experiment = get_experiment(session=session, key=key)
    now = utcnow()
    tags = _earlier_tags(session, experiment) + list(tags)
    tags = list(dict.fromkeys(tags))  # a union, in order of first appearance
    found: list[tuple[Metric, dict]] = []
    for metric in experiment.metrics:
        if metric.type != "binary":
            continue
        job = _latest_job(session, experiment, metric.key)
        unsound = _unsound(job) if job is not None else None
        if job is not None and unsound is None:
            unsound = _pooled_over_uneven_cells(session, experiment, metric, job)
        if unsound is not None:
            comparisons = _from_conjugate(session, experiment, metric, notes=(unsound,))
        elif job is not None and job.method == "factorial":
            comparisons = _from_factorial_job(experiment, metric, job)
        elif job is not None:
            comparisons = _from_hierarchical_job(experiment, metric, job)
        else:
            comparisons = _from_conjugate(session, experiment, metric)
        found += [(metric, f) for f in comparisons]
    # Every comparison of the publication is tested at once: wins and losses are its
    # discoveries (analysis/discovery.py), valid across all of them and at any look.
    p_values = [_always_valid_p(f["log_lift"]) for _, f in found]
    discovered = discoveries(p_values, thresholds.false_discovery_rate)
    rows = [
        _learning(
            experiment,
            metric,
            thresholds,
            tags,
            now,
            discovered=bool(d),
            p_value=p,
            comparisons=len(found),
            **f,
        )
        for (metric, f), p, d in zip(found, p_values, discovered, strict=True)
    ]
    session.execute(
        delete(Learning).where(
            Learning.experiment_id == experiment.id, Learning.source == "published"
        )
    )
    session.add_all(rows)
    if not commit:
        session.flush()
        return rows
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise Conflict(
            f"Learnings of '{key}' were being published at the same time; retry."
        ) from error
    # Not refreshed: a publication committed right after this one may already have replaced
    # these rows; the answer is what this request stored (ids were assigned at the flush).
    return rows


def _earlier_tags(session: Session, experiment: Experiment) -> list[str]:
    """The tags of the experiment's published learnings, in the order they were given: a
    republication (concluding is one) must not drop a tag someone searches by."""
    rows = session.execute(
        select(Learning.tags)
        .where(Learning.experiment_id == experiment.id, Learning.source == "published")
        .order_by(Learning.id)
    ).scalars()
    return [tag for tags in rows for tag in tags or ()]


def _latest_job(session: Session, experiment: Experiment, metric: str) -> AnalysisJob | None:
    return session.execute(
        select(AnalysisJob)
        .where(
            AnalysisJob.experiment_id == experiment.id,
            AnalysisJob.metric == metric,
            AnalysisJob.status == "succeeded",
        )
        .order_by(AnalysisJob.finished_at.desc(), AnalysisJob.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _pooled_over_uneven_cells(
    session: Session, experiment: Experiment, metric: Metric, job: AnalysisJob
) -> str | None:
    """Why a converged PyMC job still must not feed learnings: its models take each segment's
    counts summed over allocation periods, which a bandit fed unevenly, so its comparisons are
    confounded as pooled counts are (see results.py); or None."""
    _, strata = metric_strata(session=session, experiment=experiment, metric=metric)
    if not any(stratum.stratified for stratum in strata):
        return None
    return (
        f"The {job.method} PyMC job {job.id} sums each segment's counts over allocation periods "
        "whose weights differed (a bandit's): its comparisons are confounded by the changing "
        "allocation, so these are the conjugate results, compared within periods."
    )


def _unsound(job: AnalysisJob) -> str | None:
    """Why a finished PyMC job must not feed learnings (its sampler did not converge), or
    None. Its numbers are then not the posterior the model defines: the conjugate results
    stand in, and the learning says so."""
    diagnostics = (job.result or {}).get("diagnostics") or {}
    rhat = diagnostics.get("max_rhat")
    divergences = diagnostics.get("divergences")
    ess = diagnostics.get("min_ess")
    sound = (
        diagnostics.get("converged") is True
        and rhat is not None
        and rhat <= MAX_RHAT
        and divergences == 0
        and ess is not None
        and ess >= MIN_ESS
    )
    if sound:
        return None
    return (
        f"The {job.method} PyMC job {job.id} did not converge (max R-hat {rhat}, "
        f"{divergences} divergences, bulk ESS {ess}; needed R-hat ≤ {MAX_RHAT}, no divergence, "
        f"ESS ≥ {MIN_ESS}): these are the conjugate results."
    )


def _from_conjugate(
    session: Session, experiment: Experiment, metric: Metric, notes: tuple[str, ...] = ()
) -> list[dict]:
    """From the results' own comparisons: each segment within its allocation periods, `all`
    within period × segment cells, standardised to their unit shares (see results.py). A
    variant's learning is its row of the results; a factor level's compares the mean rate of
    the variants with the level with that of their twins, on the same per-arm estimates
    (analysis/contrasts.py). An experiment that started from the registry's prior is read
    from its own data: the registry already holds what that prior knew."""
    learned = bool(experiment.priors) and experiment.prior == "learnings"
    layout, strata = metric_strata(
        session=session, experiment=experiment, metric=metric, own_data_only=learned
    )
    variants = layout.arms[: layout.variants]
    control = layout.control
    factors = [dict(v.factors) for v in experiment.variants]
    factorial = factorial_problem(factors, control) is None
    notes = [*notes, OWN_DATA_NOTE] if learned else list(notes)
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
            rng=rng,
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
        "notes": "\n".join(notes),
    }


def _from_factorial_job(experiment: Experiment, metric: Metric, job: AnalysisJob) -> list[dict]:
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


def _from_hierarchical_job(experiment: Experiment, metric: Metric, job: AnalysisJob) -> list[dict]:
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


def _learning(
    experiment, metric, thresholds, tags, now, *, discovered, p_value, comparisons, **found
) -> Learning:
    """A learning of the publication; `p_value` is its always-valid p-value (None without a
    log-lift), `discovered` whether the publication's e-BH chose it."""
    mean, low, high = found.pop("lift")
    log_mean, log_sd = found.pop("log_lift")
    notes = [found.pop("notes")] if found.get("notes") else []
    found.pop("notes", None)
    prob = found["prob_better"]
    judged = "inconclusive"
    if None not in (prob, low, high):
        judged = verdict(prob, low, high, thresholds, discovered=discovered)
        if judged == "inconclusive" and max(prob, 1 - prob) >= thresholds.win_probability:
            p = "none" if p_value is None else f"{p_value:.2g}"
            notes.append(
                f"P(better) {prob:.3f}, but not a discovery among the publication's "
                f"{comparisons} comparisons at a {thresholds.false_discovery_rate:.0%} "
                f"false-discovery rate (always-valid p {p}): with daily looks and this many "
                "comparisons, chance alone gets there."
            )
    learning = Learning(
        source="published",
        experiment_id=experiment.id,
        experiment_key=experiment.key,
        metric=metric.key,
        lift_mean=mean,
        lift_low=low,
        lift_high=high,
        log_lift_mean=log_mean,
        log_lift_sd=log_sd,
        always_valid_p=p_value,
        comparisons=comparisons,
        false_discovery_rate=thresholds.false_discovery_rate,
        verdict=judged,
        hypothesis=experiment.hypothesis or "",
        notes="\n".join(notes),
        tags=list(tags),
        created_at=now,
        updated_at=now,
        **found,
    )
    learning.summary = summary_sentence(learning)
    return learning


def _always_valid_p(log_lift: tuple) -> float | None:
    mean, sd = log_lift
    if mean is None or sd is None or not sd > 0:
        return None
    return always_valid_p(mean, sd)


def _interval_log_lift(low, high) -> tuple:
    if low is None or high is None or not -1 < low < high:
        return None, None
    return interval_log_lift(low, high)


def summary_sentence(learning: Learning) -> str:
    """'For newcomers, push beat email on activated by +14% (95%: +6% to +22%), probability
    0.999, 8,000 users.'"""
    who = "Across all users" if learning.segment == ALL_SEGMENT else f"For {learning.segment}"
    if learning.factor == VARIANT_FACTOR:
        subject, other = f"'{learning.level}'", f"the control '{learning.baseline_level}'"
    else:
        subject, other = learning.level, learning.baseline_level
    verb = {
        "win": "beat",
        "loss": "did worse than",
        "flat": "did about as well as",
        "inconclusive": "was not clearly different from",
    }[learning.verdict]
    if learning.lift_mean is None:
        return f"{who}, {subject} {verb} {other} on {learning.metric} ({learning.units:,} users)."
    if learning.lift_median is not None:
        by = f"{_percent(learning.lift_median)} (median; 95%:"
    else:
        by = f"{_percent(learning.lift_mean)} (95%:"
    return (
        f"{who}, {subject} {verb} {other} on {learning.metric} by {by} "
        f"{_percent(learning.lift_low)} to {_percent(learning.lift_high)}), probability "
        f"{learning.prob_better:.3f}, {learning.units:,} users."
    )


def _percent(value: float) -> str:
    """+14%; a value that would round to ±0% keeps a decimal (-0.4%, not -0%)."""
    return f"{value:+.1%}" if abs(value) < 0.005 else f"{value:+.0%}"


# -- hand-written ------------------------------------------------------------------------------


def create_manual(*, session: Session, fields: dict) -> Learning:
    """A learning written by hand (an interview, qualitative research), with tags and links."""
    now = utcnow()
    experiment_key = fields.pop("experiment", None)
    experiment_id = None
    if experiment_key:
        experiment_id = get_experiment(session=session, key=experiment_key).id
    learning = Learning(
        source="manual",
        experiment_id=experiment_id,
        experiment_key=experiment_key,
        created_at=now,
        updated_at=now,
        **fields,
    )
    session.add(learning)
    session.commit()
    session.refresh(learning)
    return learning


# -- querying ----------------------------------------------------------------------------------


def search(
    *, session: Session, filters: Filters, sort: str = "-date", offset: int = 0, limit: int = 50
) -> tuple[list[Learning], int]:
    """Learnings matching every filter (and the text query), sorted; with the total count."""
    if sort not in SORTS:
        raise InvalidSpec({"sort": [f"Unknown sort '{sort}': one of {', '.join(SORTS)}."]})
    conditions = _conditions(session, filters)
    total = session.execute(
        select(func.count()).select_from(Learning).where(*conditions)
    ).scalar_one()
    order = {
        "date": (Learning.created_at.asc(), Learning.id.asc()),
        "-date": (Learning.created_at.desc(), Learning.id.desc()),
        "lift": (Learning.lift_mean.is_(None), Learning.lift_mean.asc(), Learning.id.asc()),
        "-lift": (Learning.lift_mean.is_(None), Learning.lift_mean.desc(), Learning.id.desc()),
    }[sort]
    items = session.execute(
        select(Learning).where(*conditions).order_by(*order).offset(offset).limit(limit)
    ).scalars()
    return list(items), total


def _conditions(session: Session, f: Filters) -> list:
    conditions = []
    for column, value in (
        (Learning.segment, f.segment),
        (Learning.metric, f.metric),
        (Learning.factor, f.factor),
        (Learning.level, f.level),
        (Learning.channel, f.channel),
        (Learning.experiment_key, f.experiment),
        (Learning.verdict, f.verdict),
        (Learning.source, f.source),
    ):
        if value is not None:
            conditions.append(column == value)
    postgres = session.get_bind().dialect.name == "postgresql"
    for index, tag in enumerate(f.tags):
        # An element of the tags array equal to the tag, whatever it holds (quotes, backslashes,
        # any script): the text of the JSON would spell those differently on each database.
        name = f"tag_{index}"
        if postgres:
            condition = text(f"learning.tags @> CAST(:{name} AS jsonb)")
            conditions.append(condition.bindparams(**{name: json.dumps([tag])}))
        else:
            condition = text(
                f"EXISTS (SELECT 1 FROM json_each(learning.tags) WHERE value = :{name})"
            )
            conditions.append(condition.bindparams(**{name: tag}))
    if f.since is not None:
        conditions.append(Learning.created_at >= f.since)
    if f.until is not None:
        conditions.append(Learning.created_at <= f.until)
    if f.q:
        conditions.append(_text_match(session, f.q))
    return conditions


def _text_match(session: Session, query: str):
    """Full-text match over summary, hypothesis and notes: FTS5 on SQLite (every word, stemmed,
    as a prefix), websearch syntax on PostgreSQL (the GIN index of migration 0009)."""
    if session.get_bind().dialect.name == "postgresql":
        document = func.to_tsvector(
            text("'english'"),
            func.coalesce(Learning.summary, "")
            + " "
            + func.coalesce(Learning.hypothesis, "")
            + " "
            + func.coalesce(Learning.notes, ""),
        )
        return document.op("@@")(func.websearch_to_tsquery(text("'english'"), query))
    words = [w for w in "".join(c if c.isalnum() else " " for c in query).split() if w]
    if not words:
        return Learning.id.is_(None)
    match = " ".join(f'"{w}"*' for w in words)
    matches = text("SELECT rowid FROM learning_fts WHERE learning_fts MATCH :m").bindparams(m=match)
    return Learning.id.in_(select(text("rowid")).select_from(matches.columns().subquery()))


# -- evidence across experiments ----------------------------------------------------------------


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


def get_learning(*, session: Session, learning_id: int) -> Learning:
    learning = session.get(Learning, learning_id)
    if learning is None:
        raise NotFound(f"No learning with id {learning_id}.")
    return learning


# -- export ------------------------------------------------------------------------------------


def as_record(learning: Learning) -> dict:
    record = {name: getattr(learning, name) for name in EXPORT_FIELDS}
    for name in ("created_at", "updated_at"):
        record[name] = record[name].isoformat() if record[name] else None
    return record


# -- priors for new experiments -------------------------------------------------------------------


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
