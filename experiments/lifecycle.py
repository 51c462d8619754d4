"""Creating experiments and moving them through draft → running ⇄ paused → concluded."""

import secrets
from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from experiments.clock import utcnow
from experiments.errors import Conflict, InvalidSpec
from experiments.spec import ExperimentSpec
from experiments.storage.repository import get_experiment
from experiments.storage.tables import AllocationPeriod, Experiment, Metric, Segment, Variant
from experiments.vocabulary import OTHER_SEGMENT

# action: (the states it may start from, the state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({"draft", "paused"}), "running"),
    "pause": (frozenset({"running"}), "paused"),
    "conclude": (frozenset({"running", "paused"}), "concluded"),
}


# The experiment row's columns that store the spec's field of the same name as it is.
STORED_AS_SPECIFIED = (
    "key",
    "name",
    "hypothesis",
    "allocation",
    "stickiness",
    "control",
    "attribution_window_hours",
    "holdout",
    "timezone",
    "relative_threshold_of_caring",
    "threshold_of_caring",
    "prior",
    "prior_units",
)

# Where hash seeds come from: the system's randomness (the test suite swaps in a seeded
# generator per test, so that which unit lands in which arm is the same every run).
SEEDS = secrets.SystemRandom()


def new_seed() -> int:
    """A fresh 31-bit hash seed (stored, so every node buckets with the same one)."""
    return SEEDS.getrandbits(31)


def create_experiment(
    *, session: Session, spec: ExperimentSpec, now: datetime | None = None, commit: bool = True
) -> Experiment:
    """Store a new experiment as a draft (`commit=False`: in the caller's transaction). Raises
    Conflict if its key is taken."""
    now = now or utcnow()
    if session.exec(select(Experiment.id).where(Experiment.key == spec.key)).first():
        raise Conflict(f"An experiment with key '{spec.key}' already exists.")
    experiment = Experiment(
        **{name: getattr(spec, name) for name in STORED_AS_SPECIFIED},
        **asdict(spec.bandit),
        factors=[[name, list(levels)] for name, levels in spec.factors],
        holdout_seed=new_seed(),
        quiet_hours_start=spec.quiet_hours.start if spec.quiet_hours else None,
        quiet_hours_end=spec.quiet_hours.end if spec.quiet_hours else None,
        created_at=now,
        updated_at=now,
        variants=[
            Variant(key=v.key, position=i, factors=v.factors, payload=v.payload, weight=v.weight)
            for i, v in enumerate(spec.variants)
        ],
        segments=[
            Segment(key=s.key, position=i, rule=s.rule.__dict__)
            for i, s in enumerate(spec.segments)
        ],
        metrics=[
            Metric(
                key=m.key,
                position=i,
                type=m.type,
                role=m.role,
                margin=m.margin,
                higher_is_better=m.higher_is_better,
            )
            for i, m in enumerate(spec.metrics)
        ],
    )
    session.add(experiment)
    try:
        session.commit() if commit else session.flush()
    except IntegrityError as error:  # another request created the same key in between
        session.rollback()
        raise Conflict(f"An experiment with key '{spec.key}' already exists.") from error
    return experiment


def start_experiment(*, session: Session, key: str, now: datetime | None = None) -> Experiment:
    """Start (or resume) an experiment; the first start opens allocation period 1."""
    now = now or utcnow()
    first_start = get_experiment(session=session, key=key).started_at is None
    experiment = _transition(
        session, key, "start", now, **({"started_at": now} if first_start else {})
    )
    if experiment.current_period == 0:
        first_reweight = None
        if experiment.allocation == "thompson":
            first_reweight = now + timedelta(seconds=experiment.update_every_seconds)
        opened = session.execute(
            update(Experiment)
            .where(Experiment.id == experiment.id, Experiment.current_period == 0)
            .values(current_period=1, next_reweight_at=first_reweight)
        ).rowcount
        if opened:
            session.add(
                AllocationPeriod(
                    experiment_id=experiment.id,
                    number=1,
                    seed=new_seed(),
                    weights=initial_weights(experiment),
                    started_at=now,
                )
            )
    session.commit()
    session.refresh(experiment)
    return experiment


def pause_experiment(*, session: Session, key: str, now: datetime | None = None) -> Experiment:
    experiment = _transition(session, key, "pause", now or utcnow())
    session.commit()
    session.refresh(experiment)
    return experiment


def conclude_experiment(
    *,
    session: Session,
    key: str,
    winner: str | None = None,
    now: datetime | None = None,
    commit: bool = True,
) -> Experiment:
    """Conclude with a declared winner (default: the control, the safe message to keep);
    `commit=False`: in the caller's transaction."""
    now = now or utcnow()
    experiment = get_experiment(session=session, key=key)
    winner = winner or experiment.control
    if winner not in {v.key for v in experiment.variants}:
        raise InvalidSpec({"winner": [f"'{winner}' is not one of the variants."]})
    experiment = _transition(session, key, "conclude", now, winner=winner, concluded_at=now)
    if not commit:
        session.flush()
        return experiment
    session.commit()
    session.refresh(experiment)
    return experiment


def initial_weights(experiment: Experiment) -> dict[str, dict[str, float]]:
    """Period 1 weights: the declared split, the same in every segment (and in `other`)."""
    split = {v.key: v.weight for v in experiment.variants}
    return {segment: dict(split) for segment in segment_keys(experiment)}


def segment_keys(experiment: Experiment) -> list[str]:
    return [s.key for s in experiment.segments] + [OTHER_SEGMENT]


def _transition(session: Session, key: str, action: str, now: datetime, **values) -> Experiment:
    """Move to the action's target state with one conditional UPDATE, so that two concurrent
    requests cannot both succeed from the same starting state."""
    sources, target = TRANSITIONS[action]
    experiment = get_experiment(session=session, key=key)
    changed = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment.id, Experiment.status.in_(sources))
        .values(status=target, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        session.rollback()
        current = get_experiment(session=session, key=key).status
        allowed = " or ".join(sorted(sources))
        raise Conflict(
            f"Cannot {action} experiment '{key}': it is {current}; "
            f"{action} applies to an experiment that is {allowed}."
        )
    return experiment
