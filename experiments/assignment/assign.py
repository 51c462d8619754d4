"""Assigning units to variants: one unit or a batch, through the same path.

For each unit: its segment (first matching rule), the holdout (its own hash seed, so that
reweighting never moves a unit in or out), then the variant, by hashing the unit into the
current period's cumulative weights for its segment. Under `unit` stickiness the first answer is
stored (unique on experiment + unit) and returned for the life of the experiment; under
`decision` every call is a fresh decision with its own id.
"""

import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from bandits.hashing import bucket, pick
from experiments.allocation.reweight import maybe_reweight
from experiments.assignment.store import (
    add_units,
    insert_assignments,
    prepare_assignments,
    stored_assignments,
)
from experiments.assignment.timing import send_at, zone
from experiments.clock import utcnow
from experiments.errors import Conflict
from experiments.segmentation import segment_of
from experiments.snapshot import ExperimentSnapshot, SnapshotCache
from experiments.storage.database import Database
from experiments.storage.writer import GroupCommitWriter
from experiments.telemetry import count_assignments
from experiments.vocabulary import HOLDOUT_ARM


# Plain (not frozen) slotted dataclasses: a frozen one sets each field through
# object.__setattr__, and these are made once per unit of every batch.
@dataclass(slots=True)
class UnitRequest:
    unit_id: str
    attributes: dict | None = None
    timezone: str | None = None


@dataclass(slots=True)
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
    """n new 128-bit ids as 32 hex digits: 48 bits of Unix time in milliseconds, then 80
    random bits (the layout of UUIDv7).

    Time first, so that new ids land at the end of the primary-key index: with fully random
    ids every insert dirtied a random index page, and committing 1,000 assignments wrote
    megabytes of pages (35 ms on SQLite, against 2 ms in time order). One read of the system's
    randomness serves the whole batch (uuid4() reads it once per id).
    """
    prefix = f"{time.time_ns() // 1_000_000:012x}"
    raw = os.urandom(10 * n).hex()
    return [prefix + raw[i : i + 20] for i in range(0, 20 * n, 20)]


@lru_cache(maxsize=1024)
def _zone(name: str):
    return zone(name)


def assign(
    *,
    database: Database,
    cache: SnapshotCache,
    experiment_key: str,
    units: list[UnitRequest],
    now: datetime | None = None,
) -> list[AssignmentAnswer]:
    """Assign every unit (answers in request order), storing new assignments in bulk.

    It takes the database rather than a session: it runs its own short transaction on the
    driver connection (see experiments/assignment/store.py).
    """
    # A simulated clock sees every period opened before it, whichever node opened it: its
    # requests re-check the experiment's stamp rather than trust the cache's time to live.
    simulated = now is not None
    now = now or utcnow()
    given = [_zone(u.timezone) if u.timezone else None for u in units]  # 422 before any write
    snapshot = cache.get(database=database, key=experiment_key, revalidate=simulated)
    # A unit that gives no time zone is where the experiment says its units are.
    default_zone = _zone(snapshot.timezone)
    zones = [tz or default_zone for tz in given]
    if snapshot.status == "concluded":
        count_assignments(winner=len(units))
        return _winner_answers(snapshot, units, zones, now)
    if snapshot.status != "running":
        raise Conflict(
            f"Experiment '{experiment_key}' is {snapshot.status}: it assigns only while running."
        )
    snapshot = maybe_reweight(database=database, cache=cache, snapshot=snapshot, now=now)
    segments = [segment_of(snapshot.segment_rules, u.attributes) for u in units]
    sticky = snapshot.stickiness == "unit"
    send_times = _SendTimes(snapshot, now)

    # Everything that needs no lock is done before taking it: decisions for every unit as if
    # it were new (deterministic, so a stored unit's would be the same), as rows to store.
    candidates = _decide(snapshot, units, segments, zones, now, send_times)

    writer = GroupCommitWriter.of(database)
    prepared = prepare_assignments(candidates, postgres=writer.postgres)

    def write(transaction) -> tuple[dict, list[dict]]:
        # Runs in a write transaction, perhaps together with other requests' (group commit).
        # Insert first: a new unit (the usual case) then costs no look-up; a unit already
        # stored is skipped by the unique constraint and its stored answer read back.
        inserted = insert_assignments(transaction, prepared)
        decisions = [d for d in candidates if d["id"] in inserted]
        stored = {}
        if sticky and len(inserted) < len(candidates):
            stored = stored_assignments(
                transaction,
                snapshot.experiment_id,
                [d["unit_id"] for d in candidates if d["id"] not in inserted],
            )
        add_units(
            transaction,
            snapshot.experiment_id,
            snapshot.metrics,
            Counter((d["period"], d["segment"], d["variant"] or HOLDOUT_ARM) for d in decisions),
            now.timestamp(),
        )
        return stored, decisions

    stored, decisions = writer.run(write)
    holdout = sum(1 for d in decisions if d["holdout"])
    count_assignments(
        assigned=len(decisions) - holdout,
        holdout=holdout,
        repeated=len(units) - len(decisions),
    )

    by_unit = {d["unit_id"]: d for d in decisions}
    answers = []
    next_decision = iter(decisions)
    for unit, tz in zip(units, zones, strict=True):
        if sticky:
            row = stored.get(unit.unit_id) or by_unit[unit.unit_id]
        else:
            row = next(next_decision)
        answers.append(_answer(snapshot, unit.unit_id, row, send_times(row["variant"], tz)))
    return answers


def _decide(
    snapshot: ExperimentSnapshot,
    units: list[UnitRequest],
    segments: list[str],
    zones: list,
    now: datetime,
    send_times: "_SendTimes",
) -> list[dict]:
    """A new assignment row for every unit (each unit once under `unit` stickiness).

    Runs once per unit of every batch, so the snapshot's attributes are read once, here.
    """
    sticky = snapshot.stickiness == "unit"
    todo: list[tuple[UnitRequest, str, object]] = []
    seen: set[str] = set()
    for unit, segment, tz in zip(units, segments, zones, strict=True):
        if sticky:
            if unit.unit_id in seen:
                continue
            seen.add(unit.unit_id)
        todo.append((unit, segment, tz))
    if not todo:
        return []

    ids = new_ids(len(todo))
    holdout_share, holdout_seed = snapshot.holdout, snapshot.holdout_seed
    period_seed, period = snapshot.period_seed, snapshot.period
    experiment_id, variants = snapshot.experiment_id, snapshot.variants
    weights_of = {}
    decisions = []
    for (unit, segment, tz), assignment_id in zip(todo, ids, strict=True):
        unit_id = unit.unit_id
        if holdout_share > 0 and bucket(holdout_seed, unit_id) < holdout_share:
            variant, propensity, holdout = None, holdout_share, True
        else:
            # Unit stickiness hashes the unit alone: the same unit gets the same variant from
            # every node. A decision is fresh each time, so it hashes the unit with its id.
            key = unit_id if sticky else f"{unit_id}:{assignment_id}"
            weights = weights_of.get(segment)
            if weights is None:
                weights = weights_of[segment] = snapshot.weights_of(segment)
            index = pick(weights.cumulative, bucket(period_seed, key))
            # The propensity is the weight that chose the variant (given the unit was not held
            # out): exactly what inverse-propensity weighting needs.
            variant = variants[index].key
            propensity, holdout = weights.weights[index], False
        decisions.append(
            {
                "id": assignment_id,
                "experiment_id": experiment_id,
                "unit_id": unit_id,
                "sticky_unit": unit_id if sticky else None,
                "variant": variant,
                "segment": segment,
                "period": period,
                "propensity": propensity,
                "holdout": holdout,
                "assigned_at": now,
                "send_at": send_times(variant, tz),
            }
        )
    return decisions


class _SendTimes:
    """send_at per (variant, time zone) for one request: a batch has one `now`, few variants
    and few zones, so each distinct time is computed once."""

    def __init__(self, snapshot: ExperimentSnapshot, now: datetime):
        self.snapshot = snapshot
        self.now = now
        self.memo: dict = {}

    def __call__(self, variant: str | None, tz) -> datetime | None:
        if variant is None:
            return None
        key = (variant, tz)
        if key not in self.memo:
            send = self.snapshot.variant(variant).payload.get("send")
            self.memo[key] = send_at(send, self.now, tz, self.snapshot.quiet_hours)
        return self.memo[key]


def _answer(
    snapshot: ExperimentSnapshot, unit_id: str, row: dict, at: datetime | None
) -> AssignmentAnswer:
    variant = row["variant"]
    info = snapshot.variant(variant) if variant else None
    # Positional: one answer per unit of every batch, and keywords cost a third more.
    return AssignmentAnswer(
        row["id"],
        snapshot.key,
        unit_id,
        variant,
        info.factors if info else None,
        info.payload if info else None,
        row["segment"],
        row["propensity"],
        row["period"],
        bool(row["holdout"]),
        at,
        False,
    )


def _winner_answers(snapshot: ExperimentSnapshot, units, zones, now) -> list[AssignmentAnswer]:
    """A concluded experiment answers with its winner and logs nothing."""
    info = snapshot.variant(snapshot.winner or snapshot.control)
    send_times = _SendTimes(snapshot, now)
    return [
        AssignmentAnswer(
            assignment_id=None,
            experiment=snapshot.key,
            unit_id=unit.unit_id,
            variant=info.key,
            factors=info.factors,
            payload=info.payload,
            segment=segment_of(snapshot.segment_rules, unit.attributes),
            propensity=1.0,
            period=snapshot.period,
            holdout=False,
            send_at=send_times(info.key, tz),
            concluded=True,
        )
        for unit, tz in zip(units, zones, strict=True)
    ]
