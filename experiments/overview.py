"""Read models for the pages: an experiment's history and the figures a list of experiments
shows beside each one. Nothing here writes; each function reads what the API reads, or the
tables behind it, and answers plain data.
"""

from datetime import timedelta

from sqlalchemy import String, cast, func, or_, select
from sqlmodel import Session

from analysis.curves import posterior_curves
from experiments.errors import NotFound
from experiments.results import experiment_results
from experiments.storage.repository import get_experiment
from experiments.storage.tables import AllocationPeriod, AnalysisJob, Assignment, Experiment
from experiments.vocabulary import ALL_SEGMENT, HOLDOUT_ARM

# Units over time: hourly points over a span up to this, daily points beyond it.
HOURLY_SPAN = timedelta(days=3)


def find_experiments(
    *,
    session: Session,
    status: str | None = None,
    text: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Experiment], int]:
    """Experiments, newest first, optionally of one status and whose key or name contains
    `text` (case-insensitive); with the total count."""
    conditions = []
    if status:
        conditions.append(Experiment.status == status)
    if text:
        pattern = f"%{text.lower()}%"
        conditions.append(
            or_(func.lower(Experiment.key).like(pattern), func.lower(Experiment.name).like(pattern))
        )
    total = session.execute(
        select(func.count()).select_from(Experiment).where(*conditions)
    ).scalar_one()
    rows = session.execute(
        select(Experiment)
        .where(*conditions)
        .order_by(Experiment.created_at.desc(), Experiment.id.desc())
        .offset(offset)
        .limit(limit)
    ).scalars()
    return list(rows), total


def headline(*, session: Session, experiment: Experiment) -> dict:
    """What a list shows beside an experiment: units, the leader and its P(best), the
    recommendation, and whether SRM or a guardrail is flagged (from the results on `all`)."""
    if experiment.status == "draft":
        return {"units": 0, "leader": None, "prob_best": None, "recommendation": None}
    answer = experiment_results(session=session, key=experiment.key, segment=ALL_SEGMENT)
    block = answer["segments"][0]
    variants = [v for v in block["variants"] if not v["holdout"]]
    leader = answer["recommendation"]["variant"]
    if leader is None and variants:
        leader = max(variants, key=lambda v: v["prob_best"] or 0)["variant"]
    prob_best = next((v["prob_best"] for v in variants if v["variant"] == leader), None)
    return {
        "units": sum(v["units"] for v in block["variants"]),
        "leader": leader,
        "prob_best": prob_best,
        "recommendation": answer["recommendation"],
        "srm_flag": answer["srm"]["flag"],
        "guardrail_flags": sorted(
            {f"{g['variant']} on {g['metric']}" for g in answer["guardrails"] if g["flag"]}
        ),
    }


def allocation_history(*, session: Session, key: str) -> dict:
    """The weights of each allocation period, per segment: {"periods": [n, …],
    "started_at": […], "weights": {segment: {variant: [w per period]}}}."""
    experiment = get_experiment(session=session, key=key)
    periods = session.execute(
        select(AllocationPeriod)
        .where(AllocationPeriod.experiment_id == experiment.id)
        .order_by(AllocationPeriod.number)
    ).scalars()
    variants = [v.key for v in experiment.variants]
    numbers, started, weights = [], [], {}
    for period in periods:
        numbers.append(period.number)
        started.append(period.started_at)
        for segment, shares in period.weights.items():
            series = weights.setdefault(segment, {v: [] for v in variants})
            for variant in variants:
                series[variant].append(shares.get(variant, 0.0))
    return {"periods": numbers, "started_at": started, "weights": weights}


def units_over_time(*, session: Session, key: str) -> dict:
    """Cumulative units per arm at the end of each hour (or day, for a longer experiment) in
    which any unit was assigned: {"times": [label, …], "step": "hour" | "day",
    "units": {arm: [cumulative units per time]}}; the holdout is the arm "(holdout)"."""
    experiment = get_experiment(session=session, key=key)
    mine = Assignment.experiment_id == experiment.id
    first, last = session.execute(
        select(func.min(Assignment.assigned_at), func.max(Assignment.assigned_at)).where(mine)
    ).one()
    if first is None:
        return {"times": [], "step": "hour", "units": {}}
    step = "hour" if last - first <= HOURLY_SPAN else "day"
    bucket = _time_bucket(session, step)
    rows = session.execute(
        select(bucket.label("t"), Assignment.variant, func.count())
        .where(mine)
        .group_by(bucket, Assignment.variant)
        .order_by(bucket)
    ).all()
    times = sorted({str(t) for t, _, _ in rows})
    position = {t: i for i, t in enumerate(times)}
    arms = [v.key for v in experiment.variants]
    if any(variant is None for _, variant, _ in rows):
        arms.append(HOLDOUT_ARM)
    counts = {arm: [0] * len(times) for arm in arms}
    for t, variant, n in rows:
        counts[variant or HOLDOUT_ARM][position[str(t)]] += n
    cumulative = {}
    for arm, per_time in counts.items():
        running, series = 0, []
        for n in per_time:
            running += n
            series.append(running)
        cumulative[arm] = series
    return {"times": times, "step": step, "units": cumulative}


def _time_bucket(session: Session, step: str):
    """The assignment's time truncated to the hour or day, as UTC text, on either database."""
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone("UTC", Assignment.assigned_at)
        unit = "hour" if step == "hour" else "day"
        return func.to_char(func.date_trunc(unit, utc), "YYYY-MM-DD HH24:00")
    pattern = "%Y-%m-%d %H:00" if step == "hour" else "%Y-%m-%d 00:00"
    return func.strftime(pattern, cast(Assignment.assigned_at, String))


def analysis_jobs(*, session: Session, key: str, limit: int = 20) -> list[AnalysisJob]:
    """An experiment's analyses, newest first."""
    experiment = get_experiment(session=session, key=key)
    return list(
        session.execute(
            select(AnalysisJob)
            .where(AnalysisJob.experiment_id == experiment.id)
            .order_by(AnalysisJob.id.desc())
            .limit(limit)
        ).scalars()
    )


def job_of_experiment(*, session: Session, key: str, job_id: int) -> AnalysisJob:
    """One analysis of this experiment (NotFound if it is another experiment's)."""
    experiment = get_experiment(session=session, key=key)
    job = session.get(AnalysisJob, job_id)
    if job is None or job.experiment_id != experiment.id:
        raise NotFound(f"No analysis with id {job_id} of experiment '{key}'.")
    return job


def rate_curves(answer: dict, segment: str = ALL_SEGMENT) -> list[dict]:
    """The posterior density of each arm's rate (or mean) in one segment of a results answer,
    as curves to draw: [{"variant", "holdout", "x": […], "y": […]}]."""
    block = next((b for b in answer["segments"] if b["segment"] == segment), None)
    if block is None:
        return []
    rows = [v for v in block["variants"] if v["rate"] is not None]
    curves = posterior_curves(
        [(v["rate"]["mean"], *v["rate"]["ci"]) for v in rows],
        bounded=answer["method"] == "beta-binomial",
    )
    return [
        {"variant": v["variant"], "holdout": v["holdout"], "x": x, "y": y}
        for v, (x, y) in zip(rows, curves, strict=True)
    ]
