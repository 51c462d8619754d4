"""Reweighting a Thompson-sampling experiment: a new allocation period per segment.

A reweight reads the primary metric's sufficient statistics, computes per segment the posterior
probability that each variant is best, floors it at `min_weight`, and opens the next
`AllocationPeriod` with those weights and a fresh hash seed. It happens on schedule (the first
request after `next_reweight_at`, on any worker, claims it with one conditional UPDATE) or on
demand.
"""

import logging
import math
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select, update
from sqlmodel import Session

from bandits.delays import DelayDistribution, failure_shares
from bandits.policies import ThompsonSampling, cap_arms, exclude_arms, segment_weights
from experiments.assignment.snapshot import ExperimentSnapshot, SnapshotCache, load_snapshot
from experiments.clock import as_utc, utcnow
from experiments.errors import Conflict
from experiments.lifecycle import new_seed
from experiments.results import prior_arms, tripped_guardrails
from experiments.storage.database import Database
from experiments.storage.repository import get_experiment
from experiments.storage.tables import AllocationPeriod, ArmStats, Experiment, Metric, UnitMetric
from experiments.vocabulary import HOLDOUT_ARM, OTHER_SEGMENT

log = logging.getLogger(__name__)

# The most a variant whose guardrail tripped (not yet conclusively) gets: the floor min_weight,
# or this if the floor is lower. A tripped arm at zero would never clear a false alarm; at 1%
# it costs 1% of the users while the evidence settles either way.
TRIPPED_ARM_SHARE = 0.01
# How many units the pooled (all-segment) rate of an arm is worth in a segment's prior. A cold
# segment then starts from what the others have shown rather than from nothing, yet 100 of its
# own units outweigh the prior ten to one.
PRIOR_PSEUDO_UNITS = 10.0
# About how many conversions the delay distribution is fitted from: plenty for its shape, and
# few enough to read at every reweight.
DELAY_SAMPLE = 20_000
# The digits of an assignment id that choose the units in that sample: six of the random ones
# after its 12 hex digits of time (experiments/assignment/assign.py, `new_ids`), 1-based as in SQL.
SAMPLE_DIGITS_FROM, SAMPLE_DIGITS = 13, 6


def maybe_reweight(
    *, database: Database, cache: SnapshotCache, runtime: ExperimentSnapshot, now: datetime
) -> ExperimentSnapshot:
    """Reweight if a scheduled reweight is due and this request wins the claim on it."""
    if (
        runtime.allocation != "thompson"
        or runtime.next_reweight_at is None
        or now < runtime.next_reweight_at
    ):
        return runtime
    # Three short steps, so that no writer waits while the weights are computed (on SQLite a
    # write transaction holds the one write lock): claim the due reweight, compute from a read
    # snapshot, open the period if no other reweight opened one meanwhile.
    with database.session(write=True) as session:
        claimed = session.execute(
            update(Experiment)
            .where(
                Experiment.id == runtime.experiment_id,
                Experiment.status == "running",
                Experiment.next_reweight_at <= now,
            )
            .values(next_reweight_at=now + timedelta(seconds=runtime.update_every_seconds))
        ).rowcount
        session.commit()
    if claimed:
        with database.session() as session:
            weights = compute_weights(session=session, runtime=runtime, now=now)
        if weights is not None:
            with database.session(write=True) as session:
                try:
                    _open_period(session, runtime, weights, now)
                    session.commit()
                except Conflict:  # another reweight got there first; its period stands
                    session.rollback()
    cache.invalidate(runtime.key)
    return cache.get(database=database, key=runtime.key)


def reweight(
    *, database: Database, cache: SnapshotCache, key: str, now: datetime | None = None
) -> AllocationPeriod:
    """Reweight now, on demand. Conflict if the experiment cannot be reweighted yet, or if
    another reweight opened a period while this one computed its weights.

    The weights are computed from a read snapshot, outside any write transaction: for a large
    experiment that takes seconds, during which every other writer would otherwise wait."""
    now = now or utcnow()
    with database.session() as session:
        experiment = get_experiment(session=session, key=key)
        if experiment.allocation != "thompson":
            raise Conflict(f"Experiment '{key}' has a fixed split: there is nothing to reweight.")
        if experiment.status != "running":
            raise Conflict(
                f"Experiment '{key}' is {experiment.status}: only a running one reweights."
            )
        runtime = load_snapshot(session=session, key=key)
        weights = compute_weights(session=session, runtime=runtime, now=now, explain=True)
    with database.session(write=True) as session:
        period = _open_period(session, runtime, weights, now)
        session.execute(
            update(Experiment)
            .where(Experiment.id == runtime.experiment_id)
            .values(next_reweight_at=now + timedelta(seconds=runtime.update_every_seconds))
        )
        session.commit()
    cache.invalidate(key)
    return period


def compute_weights(
    *, session: Session, runtime: ExperimentSnapshot, now: datetime, explain: bool = False
) -> dict[str, dict[str, float]] | None:
    """Next period's weights per segment; None (or Conflict, if `explain`) while some arm has
    fewer than `min_units_per_arm` units."""
    segments = [key for key, _ in runtime.segment_rules] + [OTHER_SEGMENT]
    variants = [v.key for v in runtime.variants]
    successes, trials, effective = arm_counts(
        session=session, runtime=runtime, segments=segments, now=now
    )
    per_arm = trials.sum(axis=0)
    short = [
        (v, int(n)) for v, n in zip(variants, per_arm, strict=True) if n < runtime.min_units_per_arm
    ]
    if short:
        if explain:
            listed = ", ".join(f"{v} has {n}" for v, n in short)
            raise Conflict(
                f"Not enough units to reweight: each variant needs {runtime.min_units_per_arm} "
                f"(min_units_per_arm); {listed}."
            )
        return None
    experiment = session.get(Experiment, runtime.experiment_id)
    if experiment.prior == "learnings":
        # The registry's evidence as pseudo-observations, each segment's worth prior_units.
        successes, effective = successes.copy(), effective.copy()
        for i, segment in enumerate(segments):
            found = prior_arms(experiment.priors, segment, variants)
            if found is not None:
                successes[i] += found[0]
                effective[i] += np.add(found[0], found[1])
    tripped = tripped_guardrails(session, experiment)
    conclusive = {c.variant for c in tripped if c.conclusive}
    held = {c.variant for c in tripped} - conclusive
    if tripped:
        log.warning(
            "Experiment %s: guardrails tripped; held at the floor: %s; switched off: %s.",
            runtime.key,
            ", ".join(sorted(held)) or "none",
            ", ".join(sorted(conclusive)) or "none",
        )
    return thompson_weights(
        successes,
        effective,
        segments,
        variants,
        runtime.min_weight,
        excluded=np.array([v in conclusive for v in variants]),
        held=np.array([v in held for v in variants]),
    )


def thompson_weights(
    successes: np.ndarray,
    trials: np.ndarray,
    segments: list[str],
    variants: list[str],
    min_weight: float,
    excluded: np.ndarray | None = None,
    held: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Weights per segment. Arms whose guardrail harm is conclusive (`excluded`) get exactly
    zero; arms whose guardrail tripped short of that (`held`) get at most the floor,
    `min_weight` (at least TRIPPED_ARM_SHARE), so that they keep collecting the data that
    would clear them or settle the harm."""
    shares = segment_weights(
        successes, trials, ThompsonSampling(min_weight=min_weight), PRIOR_PSEUDO_UNITS
    )
    if excluded is not None and excluded.any():
        shares = exclude_arms(shares, excluded)
    if held is not None and held.any():
        shares = cap_arms(shares, held, max(min_weight, TRIPPED_ARM_SHARE))
    return {
        segment: {v: round(float(w), 6) for v, w in zip(variants, row, strict=True)}
        for segment, row in zip(segments, shares, strict=True)
    }


def arm_counts(
    *, session: Session, runtime: ExperimentSnapshot, segments: list[str], now: datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(successes, trials, delay-aware trials) of the primary metric, each of shape
    (segments, variants), over all periods.

    Delay-aware trials count a unit that has not converted as part of a trial, by G(age), G
    being the share of conversions that arrive by that age (bandits/delays.py): a unit
    assigned an hour ago is not yet a failure. A row's units are taken as assigned evenly
    about their mean time (which arm_stats keeps, so no assignment row is read), as far as
    their allocation period reaches on the nearer side, and G is averaged over their ages.
    Each segment's silent units count as their failure shares at its rate (`failure_shares`).
    """
    primary = session.execute(
        select(Metric.key).where(
            Metric.experiment_id == runtime.experiment_id, Metric.role == "primary"
        )
    ).scalar_one()
    s_index = {s: i for i, s in enumerate(segments)}
    rows = [
        row
        for row in session.execute(
            select(
                ArmStats.period,
                ArmStats.segment,
                ArmStats.variant,
                ArmStats.units,
                ArmStats.conversions,
                ArmStats.assigned_seconds,
            ).where(
                ArmStats.experiment_id == runtime.experiment_id,
                ArmStats.metric == primary,
                ArmStats.variant != HOLDOUT_ARM,
            )
        ).all()
        if row.segment in s_index and row.variant in runtime.variant_index
    ]
    units = np.array([row.units or 0 for row in rows], dtype=float)
    conversions = np.array([row.conversions or 0 for row in rows], dtype=float)
    delay = delay_distribution(
        session=session,
        runtime=runtime,
        metric=primary,
        now=now,
        conversions=int(conversions.sum()),
    )
    youngest, oldest = _age_ranges(session, runtime, rows, now, delay.window_seconds)
    arrived = delay.mean_cdf(youngest, oldest)
    segment = np.array([s_index[row.segment] for row in rows], dtype=int)
    arm = np.array([runtime.variant_index[row.variant] for row in rows], dtype=int)
    shares = np.zeros(len(rows))
    for i in np.unique(segment):  # silent units' shares of a failure, from each segment's rate
        mine = segment == i
        shares[mine] = failure_shares(units[mine], conversions[mine], arrived[mine])
    successes = np.zeros((len(segments), len(runtime.variants)))
    trials = np.zeros_like(successes)
    effective = np.zeros_like(successes)
    np.add.at(successes, (segment, arm), conversions)
    np.add.at(trials, (segment, arm), units)
    np.add.at(effective, (segment, arm), conversions + (units - conversions) * shares)
    return successes, trials, effective


def _age_ranges(
    session: Session, runtime: ExperimentSnapshot, rows: list, now: datetime, window: float
) -> tuple[np.ndarray, np.ndarray]:
    """(youngest, oldest) age of each arm_stats row's units, in seconds at `now`.

    A row knows its units' mean assignment time, not their spread. They are taken as spread
    evenly about it, as far as their period reaches on the nearer side (a period ends where
    the next begins; the current one at `now`): exact for steady traffic. Taking all at the
    mean age instead read the rate of a day-long period 10% low while its windows were open
    (delays of mean 12 h). A mean outside its period (a backfill: periods are a sequence, not
    a timeline) leaves the units at their mean age."""
    begins = dict(
        session.execute(
            select(AllocationPeriod.number, AllocationPeriod.started_at).where(
                AllocationPeriod.experiment_id == runtime.experiment_id
            )
        ).all()
    )
    clock = now.timestamp()
    begins = {number: as_utc(at).timestamp() for number, at in begins.items()}
    units = np.array([row.units or 0 for row in rows], dtype=float)
    assigned = np.array([row.assigned_seconds or 0.0 for row in rows], dtype=float)
    mean = np.divide(assigned, units, out=np.full(len(rows), clock - window), where=units > 0)
    begin = np.array([begins.get(row.period, np.inf) for row in rows], dtype=float)
    end = np.array([begins.get(row.period + 1, clock) for row in rows], dtype=float)
    inside = (begin <= mean) & (mean <= end)
    half = np.where(inside, np.minimum(mean - begin, end - mean), 0.0)
    youngest = np.maximum(0.0, clock - mean - half)
    return youngest, np.maximum(youngest, clock - mean + half)


def delay_distribution(
    *, session: Session, runtime: ExperimentSnapshot, metric: str, now: datetime, conversions: int
) -> DelayDistribution:
    """The metric's delay distribution, fitted from the conversions of a random share of the
    units, about DELAY_SAMPLE conversions of the `conversions` seen so far.

    The share is chosen at assignment, by random digits of the assignment id, so a sampled
    conversion was seen only because its delay was at most its unit's age: the one truncation
    the Lynden-Bell estimator corrects for. The latest conversions, which this read before,
    are chosen on conversion time instead: a unit assigned two days ago was among them only if
    it converted late, and with exponential delays of mean 12 h the fit put G(12 h) at 0.44
    (truth 0.63) at 10,000 conversions a day and 0.09 at 20,000, so the arms given the most
    units lately looked best. Choosing by the digits of the id costs a pass over the
    experiment's unit_metric rows in the database (no index serves it), not in Python.
    """
    query = select(UnitMetric.delay_seconds, UnitMetric.first_at).where(
        UnitMetric.experiment_id == runtime.experiment_id,
        UnitMetric.metric == metric,
        UnitMetric.total > 0,
    )
    if conversions > DELAY_SAMPLE:
        # Ids whose digits fall below share × 16^digits: hex digits of one length sort as
        # their numbers do.
        below = math.ceil(DELAY_SAMPLE / conversions * 16**SAMPLE_DIGITS)
        digits = func.substr(UnitMetric.assignment_id, SAMPLE_DIGITS_FROM, SAMPLE_DIGITS)
        query = query.where(digits < f"{below:0{SAMPLE_DIGITS}x}")
    delays, ages = [], []
    for delay, first_at in session.execute(query).all():
        age = (now - as_utc(first_at)).total_seconds() + delay  # now − assigned_at
        if age >= delay:  # seen by `now` (a simulated clock may run behind the events)
            delays.append(delay)
            ages.append(age)
    return DelayDistribution.fit(delays, ages, runtime.attribution_window_hours * 3600)


def _open_period(
    session: Session, runtime: ExperimentSnapshot, weights: dict, now: datetime
) -> AllocationPeriod:
    """The next period, opened only if no other worker opened it first (else Conflict).

    Reweights happen in time order (else Conflict): one at a `now` before the reweight that
    opened the current period would count conversions its clock has not reached and take
    the units assigned after it for just assigned. Period 1 opens at the start, on the real
    clock, which a backfill's clock may precede: it does not bind. A simulated clock that
    restarted behind the current period (a second simulation run) assigns in that period and
    reweights once it has caught up with it.
    """
    started = runtime.period_started_at
    if runtime.period > 1 and started is not None and now < started:
        message = (
            f"`now` ({now.isoformat()}) is before the reweight that opened period "
            f"{runtime.period} ({started.isoformat()}): reweights happen in time order."
        )
        raise Conflict(message, {"now": [message]})
    number = runtime.period + 1
    advanced = session.execute(
        update(Experiment)
        .where(Experiment.id == runtime.experiment_id, Experiment.current_period == runtime.period)
        .values(current_period=number, updated_at=now)
    ).rowcount
    if not advanced:
        session.rollback()
        raise Conflict("Another reweight of this experiment happened at the same time; retry.")
    period = AllocationPeriod(
        experiment_id=runtime.experiment_id,
        number=number,
        seed=new_seed(),
        weights=weights,
        started_at=now,
    )
    session.add(period)
    session.flush()
    return period
