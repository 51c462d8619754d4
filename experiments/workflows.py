"""Use cases as the API and the pages call them: one function each, one transaction each, so
that an answer always describes what was stored, and each says what it makes stale.

Creating an experiment that starts from the registry's evidence; starting, pausing and
concluding one, which publishes what it showed. A change of state that assigning sees
(status, winner) drops the experiment's snapshot from the SnapshotCache here, after its
transaction commits, so that this process serves the new state at once (other processes see
it within the cache's `ttl`). Reweighting does the same in experiments/allocation/reweight.py.
"""

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from experiments import lifecycle
from experiments.errors import Conflict
from experiments.learnings.priors import learned_priors
from experiments.learnings.publish import publish
from experiments.snapshot import SnapshotCache
from experiments.spec import ExperimentSpec
from experiments.storage.tables import Experiment

# A conclusion that collides with a publication of the same experiment's learnings made at the
# same moment (a unique index decides) is run again from the start this many times.
ATTEMPTS = 3


def create(*, session: Session, spec: ExperimentSpec, now: datetime | None = None) -> Experiment:
    """Store a new draft; with `"prior": "learnings"`, with the registry's evidence as it
    stands now as its prior. (Nothing to invalidate: no snapshot of a new key exists.)"""
    experiment = lifecycle.create_experiment(session=session, spec=spec, now=now, commit=False)
    if experiment.prior == "learnings":
        experiment.priors = learned_priors(session=session, experiment=experiment)
    try:
        session.commit()
    except IntegrityError as error:  # another request created the same key in between
        session.rollback()
        raise Conflict(f"An experiment with key '{spec.key}' already exists.") from error
    session.refresh(experiment)
    return experiment


def start(
    *, session: Session, cache: SnapshotCache, key: str, now: datetime | None = None
) -> Experiment:
    """Start a draft (opening allocation period 1) or resume a paused experiment."""
    experiment = lifecycle.start_experiment(session=session, key=key, now=now)
    cache.invalidate(key)
    return experiment


def pause(
    *, session: Session, cache: SnapshotCache, key: str, now: datetime | None = None
) -> Experiment:
    """Pause a running experiment: assignments are refused until it is resumed."""
    experiment = lifecycle.pause_experiment(session=session, key=key, now=now)
    cache.invalidate(key)
    return experiment


def conclude(
    *,
    session: Session,
    cache: SnapshotCache,
    key: str,
    winner: str | None = None,
    now: datetime | None = None,
) -> Experiment:
    """Conclude (every unit gets the winner from now on) and publish the learnings, together:
    if publishing fails, the experiment is not concluded either."""
    for _ in range(ATTEMPTS):
        experiment = lifecycle.conclude_experiment(
            session=session, key=key, winner=winner, now=now, commit=False
        )
        try:
            publish(session=session, key=key, commit=False)
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        cache.invalidate(key)
        session.refresh(experiment)
        return experiment
    raise Conflict(f"Learnings of '{key}' were being published at the same time; retry.")
