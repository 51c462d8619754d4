"""Publishing: what an experiment showed, as learnings, in one transaction.

Publishing reads the latest results of each binary metric: a finished PyMC job where there is
one for that metric (factorial: one learning per factor level; hierarchical: per variant) and
its sampler converged, else the conjugate results (a job that did not converge is named in
the learnings' notes). Where each comparison comes from is comparisons.py; here, which source
stands, how the publication's comparisons are tested together (wins and losses are its
discoveries), and the verdict each learning gets.
Republishing replaces the experiment's published learnings in one transaction, keeping the
tags earlier publications gave them; a unique index keeps one per (experiment, segment, metric,
factor, level) even under concurrent publishing.
"""

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from analysis.discovery import always_valid_p, discoveries
from analysis.evidence import Thresholds, verdict
from experiments.clock import utcnow
from experiments.errors import Conflict
from experiments.learnings.comparisons import (
    from_conjugate,
    from_factorial_job,
    from_hierarchical_job,
)
from experiments.learnings.record import (
    JOB_NOT_CONVERGED,
    JOB_POOLED_OVER_UNEVEN_ALLOCATION,
    NOT_A_DISCOVERY,
    Note,
    summary_sentence,
)
from experiments.statistics.comparisons import metric_strata
from experiments.storage.repository import get_experiment
from experiments.storage.tables import AnalysisJob, Experiment, Learning, Metric

# A PyMC job feeds learnings only if its sampler converged: rank-normalised split R-hat at most
# 1.01, no divergent transition, and a bulk ESS of at least 400, 100 per chain of the four
# (Vehtari et al. 2021, "Rank-normalization, folding, and localization").
MAX_RHAT = 1.01
MIN_ESS = 400


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
            comparisons = from_conjugate(session, experiment, metric, notes=(unsound,))
        elif job is not None and job.method == "factorial":
            comparisons = from_factorial_job(experiment, metric, job)
        elif job is not None:
            comparisons = from_hierarchical_job(experiment, metric, job)
        else:
            comparisons = from_conjugate(session, experiment, metric)
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
) -> Note | None:
    """Why a converged PyMC job still must not feed learnings: its models take each segment's
    counts summed over allocation periods, which a bandit fed unevenly, so its comparisons are
    confounded as pooled counts are (see experiments/statistics/comparisons.py); or None."""
    _, strata = metric_strata(session=session, experiment=experiment, metric=metric)
    if not any(stratum.stratified for stratum in strata):
        return None
    return Note.of(JOB_POOLED_OVER_UNEVEN_ALLOCATION, method=job.method, job=job.id)


def _unsound(job: AnalysisJob) -> Note | None:
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
    return Note.of(
        JOB_NOT_CONVERGED,
        method=job.method,
        job=job.id,
        rhat=rhat,
        divergences=divergences,
        ess=ess,
        max_rhat=MAX_RHAT,
        min_ess=MIN_ESS,
    )


def _learning(
    experiment, metric, thresholds, tags, now, *, discovered, p_value, comparisons, **found
) -> Learning:
    """A learning of the publication; `p_value` is its always-valid p-value (None without a
    log-lift), `discovered` whether the publication's e-BH chose it."""
    mean, low, high = found.pop("lift")
    log_mean, log_sd = found.pop("log_lift")
    notes = list(found.pop("notes", ()))
    prob = found["prob_better"]
    judged = "inconclusive"
    if None not in (prob, low, high):
        judged = verdict(prob, low, high, thresholds, discovered=discovered)
        if judged == "inconclusive" and max(prob, 1 - prob) >= thresholds.win_probability:
            p = "none" if p_value is None else f"{p_value:.2g}"
            notes.append(
                Note.of(
                    NOT_A_DISCOVERY,
                    prob=prob,
                    comparisons=comparisons,
                    false_discovery_rate=thresholds.false_discovery_rate,
                    p=p,
                )
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
        notes="\n".join(note.text for note in notes),
        note_codes=[note.code for note in notes],
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
