"""Allocation periods' bookkeeping: claiming a due reweight, scheduling the next one, and
opening the next period with its weights and a fresh hash seed. Each step is one conditional
UPDATE (or INSERT), so that two workers never open the same period.
"""

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session

from experiments.errors import Conflict
from experiments.lifecycle import new_seed
from experiments.snapshot import ExperimentSnapshot
from experiments.storage.tables import AllocationPeriod, Experiment


def claim_due_reweight(*, session: Session, snapshot: ExperimentSnapshot, now: datetime) -> bool:
    """Claim the scheduled reweight that is due at `now`, moving the next one a period on:
    True for the one request (on any worker) that wins it."""
    return bool(
        session.execute(
            update(Experiment)
            .where(
                Experiment.id == snapshot.experiment_id,
                Experiment.status == "running",
                Experiment.next_reweight_at <= now,
            )
            .values(next_reweight_at=now + timedelta(seconds=snapshot.update_every_seconds))
        ).rowcount
    )


def schedule_next_reweight(*, session: Session, snapshot: ExperimentSnapshot, now: datetime):
    """The next scheduled reweight, a period after `now` (after a reweight on demand)."""
    session.execute(
        update(Experiment)
        .where(Experiment.id == snapshot.experiment_id)
        .values(next_reweight_at=now + timedelta(seconds=snapshot.update_every_seconds))
    )


def open_period(
    *, session: Session, snapshot: ExperimentSnapshot, weights: dict, now: datetime
) -> AllocationPeriod:
    """The next period, opened only if no other worker opened it first (else Conflict).

    Reweights happen in time order (else Conflict): one at a `now` before the reweight that
    opened the current period would count conversions its clock has not reached and take
    the units assigned after it for just assigned. Period 1 opens at the start, on the real
    clock, which a backfill's clock may precede: it does not bind. A simulated clock that
    restarted behind the current period (a second simulation run) assigns in that period and
    reweights once it has caught up with it.
    """
    started = snapshot.period_started_at
    if snapshot.period > 1 and started is not None and now < started:
        message = (
            f"`now` ({now.isoformat()}) is before the reweight that opened period "
            f"{snapshot.period} ({started.isoformat()}): reweights happen in time order."
        )
        raise Conflict(message, {"now": [message]})
    number = snapshot.period + 1
    advanced = session.execute(
        update(Experiment)
        .where(
            Experiment.id == snapshot.experiment_id, Experiment.current_period == snapshot.period
        )
        .values(current_period=number, updated_at=now)
    ).rowcount
    if not advanced:
        session.rollback()
        raise Conflict("Another reweight of this experiment happened at the same time; retry.")
    period = AllocationPeriod(
        experiment_id=snapshot.experiment_id,
        number=number,
        seed=new_seed(),
        weights=weights,
        started_at=now,
    )
    session.add(period)
    session.flush()
    return period
