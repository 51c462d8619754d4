"""Reweighting a Thompson-sampling experiment: a new allocation period per segment.

A reweight reads the primary metric's counts (experiments/statistics/bandit_counts.py) and the
tripped guardrails (experiments/statistics/comparisons.py), chooses the weights
(experiments/allocation/weights.py) and opens the next period with them
(experiments/allocation/periods.py). It happens on schedule (the first request after
`next_reweight_at`, on any worker, claims it with one conditional UPDATE) or on demand.
"""

import logging
from datetime import datetime

import numpy as np
from sqlmodel import Session

from bandits.policies import FixedSplit
from experiments.allocation.periods import claim_due_reweight, open_period, schedule_next_reweight
from experiments.allocation.weights import (
    allocation_policy,
    choose_weights,
    short_arms,
    with_learned_prior,
)
from experiments.clock import utcnow
from experiments.errors import Conflict
from experiments.snapshot import ExperimentSnapshot, SnapshotCache, load_snapshot
from experiments.statistics.bandit_counts import arm_counts
from experiments.statistics.comparisons import tripped_guardrails
from experiments.storage.database import Database
from experiments.storage.repository import get_experiment
from experiments.storage.tables import AllocationPeriod, Experiment
from experiments.telemetry import count_reweight
from experiments.vocabulary import OTHER_SEGMENT

log = logging.getLogger(__name__)


def maybe_reweight(
    *, database: Database, cache: SnapshotCache, snapshot: ExperimentSnapshot, now: datetime
) -> ExperimentSnapshot:
    """Reweight if a scheduled reweight is due and this request wins the claim on it."""
    if (
        snapshot.allocation != "thompson"
        or snapshot.next_reweight_at is None
        or now < snapshot.next_reweight_at
    ):
        return snapshot
    # Three short steps, so that no writer waits while the weights are computed (on SQLite a
    # write transaction holds the one write lock): claim the due reweight, compute from a read
    # snapshot, open the period if no other reweight opened one meanwhile.
    with database.session(write=True) as session:
        claimed = claim_due_reweight(session=session, snapshot=snapshot, now=now)
        session.commit()
    if claimed:
        with database.session() as session:
            weights = compute_weights(session=session, snapshot=snapshot, now=now)
        if weights is not None:
            with database.session(write=True) as session:
                try:
                    open_period(session=session, snapshot=snapshot, weights=weights, now=now)
                    session.commit()
                    count_reweight("scheduled")
                except Conflict:  # another reweight got there first; its period stands
                    session.rollback()
    cache.invalidate(snapshot.key)
    return cache.get(database=database, key=snapshot.key)


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
        if isinstance(allocation_policy(experiment), FixedSplit):
            raise Conflict(f"Experiment '{key}' has a fixed split: there is nothing to reweight.")
        if experiment.status != "running":
            raise Conflict(
                f"Experiment '{key}' is {experiment.status}: only a running one reweights."
            )
        snapshot = load_snapshot(session=session, key=key)
        weights = compute_weights(session=session, snapshot=snapshot, now=now, explain=True)
    with database.session(write=True) as session:
        period = open_period(session=session, snapshot=snapshot, weights=weights, now=now)
        schedule_next_reweight(session=session, snapshot=snapshot, now=now)
        session.commit()
    count_reweight("manual")
    cache.invalidate(key)
    return period


def compute_weights(
    *, session: Session, snapshot: ExperimentSnapshot, now: datetime, explain: bool = False
) -> dict[str, dict[str, float]] | None:
    """Next period's weights per segment; None (or Conflict, if `explain`) while some arm has
    fewer than `min_units_per_arm` units."""
    segments = [key for key, _ in snapshot.segment_rules] + [OTHER_SEGMENT]
    variants = [v.key for v in snapshot.variants]
    successes, trials, effective = arm_counts(
        session=session, snapshot=snapshot, segments=segments, now=now
    )
    short = short_arms(trials, variants, snapshot.min_units_per_arm)
    if short:
        if explain:
            listed = ", ".join(f"{v} has {n}" for v, n in short)
            raise Conflict(
                f"Not enough units to reweight: each variant needs {snapshot.min_units_per_arm} "
                f"(min_units_per_arm); {listed}."
            )
        return None
    experiment = session.get(Experiment, snapshot.experiment_id)
    if experiment.prior == "learnings":
        # The registry's evidence as pseudo-observations, each segment's worth prior_units.
        successes, effective = with_learned_prior(
            successes, effective, experiment.priors, segments, variants
        )
    tripped = tripped_guardrails(session, experiment)
    conclusive = {c.variant for c in tripped if c.conclusive}
    held = {c.variant for c in tripped} - conclusive
    if tripped:
        log.warning(
            "Experiment %s: guardrails tripped; held at the floor: %s; switched off: %s.",
            snapshot.key,
            ", ".join(sorted(held)) or "none",
            ", ".join(sorted(conclusive)) or "none",
        )
    return choose_weights(
        successes,
        effective,
        segments,
        variants,
        allocation_policy(experiment),
        excluded=np.array([v in conclusive for v in variants]),
        held=np.array([v in held for v in variants]),
    )
