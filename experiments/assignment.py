"""Assigning units to variants: one unit or a batch, through the same path.

For each unit: its segment (first matching rule), the holdout (its own hash seed, so that
reweighting never moves a unit in or out), then the variant, by hashing the unit into the
current period's cumulative weights for its segment. Under `unit` stickiness the first answer is
stored (unique on experiment + unit) and returned for the life of the experiment; under
`decision` every call is a fresh decision with its own id.
"""

import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import numpy as np
from sqlalchemy import select
from sqlmodel import Session

from bandits.hashing import buckets, pick_many
from experiments.db import dialect_insert
from experiments.errors import Conflict
from experiments.models import Assignment, utcnow
from experiments.reweight import maybe_reweight
from experiments.runtime import Runtime, RuntimeCache
from experiments.segmentation import segment_of
from experiments.spec import HOLDOUT_ARM
from experiments.stats import add_units
from experiments.timing import send_at, zone

MAX_BATCH = 10_000


@dataclass(frozen=True)
class UnitRequest:
    unit_id: str
    attributes: dict | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class AssignmentAnswer:
    assignment_id: str | None
    experiment: str
    unit_id: str
    variant: str | None
    factors: dict | None
    payload: dict | None
    segment: str
    propensity: float
    period: int
    holdout: bool
    send_at: datetime | None
    concluded: bool


def new_ids(n: int) -> list[str]:
    """n random 128-bit ids as hex. One read of the system's randomness for all of them:
    uuid4() reads it once per id, which costs more than the assignment itself."""
    raw = os.urandom(16 * n).hex()
    return [raw[i : i + 32] for i in range(0, 32 * n, 32)]


@lru_cache(maxsize=1024)
def _zone(name: str):
    return zone(name)


def assign(
    *,
    session: Session,
    cache: RuntimeCache,
    experiment_key: str,
    units: list[UnitRequest],
    now: datetime | None = None,
) -> list[AssignmentAnswer]:
    """Assign every unit (answers in request order), storing new assignments in bulk."""
    now = now or utcnow()
    zones = [_zone(u.timezone) if u.timezone else None for u in units]  # 400 before any write
    runtime = cache.get(session=session, key=experiment_key)
    if runtime.status == "concluded":
        return _winner_answers(runtime, units, zones, now)
    if runtime.status != "running":
        raise Conflict(
            f"Experiment '{experiment_key}' is {runtime.status}: it assigns only while running."
        )
    runtime = maybe_reweight(session=session, cache=cache, runtime=runtime, now=now)
    segments = [segment_of(runtime.segment_rules, u.attributes) for u in units]

    stored: dict[str, dict] = {}
    if runtime.stickiness == "unit":
        stored = _stored_assignments(session, runtime, {u.unit_id for u in units})

    send_times = _SendTimes(runtime, now)
    decisions = _decide(runtime, units, segments, stored)
    inserted = _store(session, runtime, decisions, now, zones, units, send_times)
    if runtime.stickiness == "unit" and len(inserted) < len(decisions):
        # Another worker stored some of these units first: theirs is the answer.
        lost = [d for d in decisions if d["id"] not in inserted]
        stored.update(_stored_assignments(session, runtime, {d["unit_id"] for d in lost}))
    counts = Counter(
        (d["period"], d["segment"], d["variant"] or HOLDOUT_ARM)
        for d in decisions
        if d["id"] in inserted
    )
    add_units(
        session=session, experiment_id=runtime.experiment_id, metrics=runtime.metrics, counts=counts
    )
    session.commit()

    by_unit = {d["unit_id"]: d for d in decisions}
    answers = []
    next_decision = iter(decisions)
    for unit, tz in zip(units, zones, strict=True):
        if runtime.stickiness == "unit":
            row = stored.get(unit.unit_id) or by_unit[unit.unit_id]
        else:
            row = next(next_decision)
        answers.append(_answer(runtime, unit.unit_id, row, send_times(row["variant"], tz)))
    return answers


def _decide(
    runtime: Runtime, units: list[UnitRequest], segments: list[str], stored: dict
) -> list[dict]:
    """New assignments for the units that have none (each unit once under `unit` stickiness)."""
    todo: list[tuple[UnitRequest, str]] = []
    seen: set[str] = set()
    for unit, segment in zip(units, segments, strict=True):
        if runtime.stickiness == "unit":
            if unit.unit_id in stored or unit.unit_id in seen:
                continue
            seen.add(unit.unit_id)
        todo.append((unit, segment))
    if not todo:
        return []

    ids = new_ids(len(todo))
    unit_ids = [unit.unit_id for unit, _ in todo]
    held_out = np.zeros(len(todo), dtype=bool)
    if runtime.holdout > 0:
        held_out = buckets(runtime.holdout_seed, unit_ids) < runtime.holdout
    # Unit stickiness hashes the unit alone: the same unit gets the same variant from every
    # node. A decision is fresh each time, so it hashes the unit with its decision's id.
    keys = (
        unit_ids
        if runtime.stickiness == "unit"
        else [f"{u}:{i}" for u, i in zip(unit_ids, ids, strict=True)]
    )
    positions = buckets(runtime.period_seed, keys)
    chosen = np.empty(len(todo), dtype=np.int64)
    propensity = np.empty(len(todo), dtype=float)
    segment_array = np.array([segment for _, segment in todo], dtype=object)
    for segment in set(segment_array):
        mask = segment_array == segment
        weights = runtime.weights_of(segment)
        chosen[mask] = pick_many(weights.cumulative, positions[mask])
        propensity[mask] = weights.weights[chosen[mask]]

    decisions = []
    for i, (unit, segment) in enumerate(todo):
        holdout = bool(held_out[i])
        decisions.append(
            {
                "id": ids[i],
                "unit_id": unit.unit_id,
                "variant": None if holdout else runtime.variants[chosen[i]].key,
                "segment": segment,
                "period": runtime.period,
                # The holdout's propensity is its share; a variant's is the weight that chose it
                # (given the unit was not held out), exactly what inverse weighting needs.
                "propensity": runtime.holdout if holdout else float(propensity[i]),
                "holdout": holdout,
            }
        )
    return decisions


def _store(session, runtime, decisions, now, zones, units, send_times) -> set[str]:
    """Insert the new assignments in one statement; the ids actually inserted."""
    if not decisions:
        return set()
    tz_of = dict(zip((u.unit_id for u in units), zones, strict=True))
    rows = [
        {
            "id": d["id"],
            "experiment_id": runtime.experiment_id,
            "unit_id": d["unit_id"],
            "sticky_unit": d["unit_id"] if runtime.stickiness == "unit" else None,
            "variant": d["variant"],
            "segment": d["segment"],
            "period": d["period"],
            "propensity": d["propensity"],
            "holdout": d["holdout"],
            "assigned_at": now,
            "send_at": send_times(d["variant"], tz_of[d["unit_id"]]),
        }
        for d in decisions
    ]
    statement = dialect_insert(session, Assignment.__table__)
    if runtime.stickiness == "unit":
        statement = statement.on_conflict_do_nothing(
            index_elements=["experiment_id", "sticky_unit"]
        )
    result = session.execute(statement.returning(Assignment.__table__.c.id), rows)
    return {row[0] for row in result}


def _stored_assignments(session: Session, runtime: Runtime, unit_ids: set[str]) -> dict[str, dict]:
    if not unit_ids:
        return {}
    table = Assignment.__table__
    query = select(
        table.c.id,
        table.c.unit_id,
        table.c.variant,
        table.c.segment,
        table.c.period,
        table.c.propensity,
        table.c.holdout,
    ).where(table.c.experiment_id == runtime.experiment_id, table.c.sticky_unit.in_(unit_ids))
    return {row.unit_id: dict(row._mapping) for row in session.execute(query)}


class _SendTimes:
    """send_at per (variant, time zone) for one request: a batch has one `now`, few variants
    and few zones, so each distinct time is computed once."""

    def __init__(self, runtime: Runtime, now: datetime):
        self.runtime = runtime
        self.now = now
        self.memo: dict = {}

    def __call__(self, variant: str | None, tz) -> datetime | None:
        if variant is None:
            return None
        key = (variant, tz)
        if key not in self.memo:
            send = self.runtime.variant(variant).payload.get("send")
            self.memo[key] = send_at(send, self.now, tz, self.runtime.quiet_hours)
        return self.memo[key]


def _answer(runtime: Runtime, unit_id: str, row: dict, at: datetime | None) -> AssignmentAnswer:
    variant = row["variant"]
    info = runtime.variant(variant) if variant else None
    return AssignmentAnswer(
        assignment_id=row["id"],
        experiment=runtime.key,
        unit_id=unit_id,
        variant=variant,
        factors=info.factors if info else None,
        payload=info.payload if info else None,
        segment=row["segment"],
        propensity=row["propensity"],
        period=row["period"],
        holdout=bool(row["holdout"]),
        send_at=at,
        concluded=False,
    )


def _winner_answers(runtime: Runtime, units, zones, now) -> list[AssignmentAnswer]:
    """A concluded experiment answers with its winner and logs nothing."""
    info = runtime.variant(runtime.winner or runtime.control)
    send_times = _SendTimes(runtime, now)
    return [
        AssignmentAnswer(
            assignment_id=None,
            experiment=runtime.key,
            unit_id=unit.unit_id,
            variant=info.key,
            factors=info.factors,
            payload=info.payload,
            segment=segment_of(runtime.segment_rules, unit.attributes),
            propensity=1.0,
            period=runtime.period,
            holdout=False,
            send_at=send_times(info.key, tz),
            concluded=True,
        )
        for unit, tz in zip(units, zones, strict=True)
    ]
