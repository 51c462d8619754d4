"""Outcomes: events from journey engines, stored once each, attributed to the assignment they
follow, and folded into the sufficient statistics the bandit and the results read.

- Idempotent by `event_id`: the outcome table's unique constraint decides (INSERT … ON CONFLICT
  DO NOTHING RETURNING), so a repeated event is counted once whichever node receives it, in
  the same batch, in concurrent batches or after a restart.
- Attribution: by `assignment_id` (a `unit_id` given beside it must be the assignment's), else
  by (experiment, unit_id): the unit's sticky assignment,
  or under decision stickiness its latest decision at or before the event. An outcome counts
  if it occurs within the experiment's `attribution_window_hours` after the assignment.
  Anything else is stored with `attributed = false` and its reason, never dropped.
- Per unit: a binary metric counts a unit once (the first positive event converts it); a
  continuous metric sums the unit's values. Each assignment's running total per metric lives
  in `unit_metric` (upserted, so concurrent batches add up exactly); the change of each total
  updates `arm_stats` (conversions, sum, sum of squares of the per-unit totals) in the same
  transaction. The rule is experiments/statistics/counting.py; the statements are
  experiments/outcomes/store.py; experiments/statistics/audit.py recomputes both from raw rows.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from experiments.clock import utcnow
from experiments.errors import NotFound
from experiments.outcomes.store import (
    OutcomeRow,
    PreparedOutcomes,
    StoredAssignment,
    UnitDelta,
    experiment_keys,
    find_assignments,
    stored_event_ids,
    write_outcomes,
)
from experiments.snapshot import ExperimentSnapshot, SnapshotCache
from experiments.statistics.counting import event_amount
from experiments.storage.database import Database
from experiments.storage.writer import GroupCommitWriter
from experiments.telemetry import count_outcome_events

log = logging.getLogger(__name__)

UNKNOWN_EXPERIMENT = "unknown_experiment"
UNKNOWN_ASSIGNMENT = "unknown_assignment"
UNKNOWN_UNIT = "unknown_unit"
UNKNOWN_METRIC = "unknown_metric"
BEFORE_ASSIGNMENT = "before_assignment"
AFTER_WINDOW = "after_window"
OTHER_EXPERIMENT = "other_experiment"
# An event naming both an assignment and a unit that is not the assignment's: one of the two
# is wrong, so it counts for neither.
OTHER_UNIT = "other_unit"


@dataclass(slots=True)
class OutcomeEvent:
    event_id: str
    metric: str
    value: float = 1.0
    experiment: str | None = None
    unit_id: str | None = None
    assignment_id: str | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class IngestCounts:
    accepted: int  # new events stored, attributed or not
    duplicates: int  # events already stored (or repeated within the request)
    unattributed: int  # of the accepted, those stored as unattributed


def ingest(
    *,
    database: Database,
    cache: SnapshotCache,
    events: list[OutcomeEvent],
    now: datetime | None = None,
) -> IngestCounts:
    """Store and attribute events; answers the counts. Events are already validated."""
    now = now or utcnow()
    unique: dict[str, OutcomeEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    batch = list(unique.values())

    writer = GroupCommitWriter.of(database)
    # Events stored before are set aside first, outside the write lock; the insert's own
    # ON CONFLICT still decides for any stored meanwhile.
    known = stored_event_ids(writer, [e.event_id for e in batch])
    fresh = [e for e in batch if e.event_id not in known]

    snapshots = _snapshots(database, cache, fresh)
    found = _assignments(writer, snapshots, fresh)
    by_id = _snapshots_by_id(database, cache, snapshots, found)
    rows = [_attribute(event, snapshots, by_id, found, now) for event in fresh]
    prepared = PreparedOutcomes(rows, writer.postgres)

    inserted = (
        writer.run(lambda transaction: write_outcomes(transaction, prepared)) if rows else set()
    )
    unattributed = sum(1 for row in rows if row.event_id in inserted and not row.attributed)
    counts = IngestCounts(
        accepted=len(inserted),
        duplicates=len(events) - len(inserted),
        unattributed=unattributed,
    )
    count_outcome_events(**vars(counts))
    return counts


def _snapshots(database, cache, events) -> dict[str, ExperimentSnapshot | None]:
    snapshots: dict[str, ExperimentSnapshot | None] = {}
    for key in {e.experiment for e in events if e.experiment}:
        try:
            snapshots[key] = cache.get(database=database, key=key)
        except NotFound:
            snapshots[key] = None
    return snapshots


def _snapshots_by_id(database, cache, snapshots, found) -> dict[int, ExperimentSnapshot]:
    """Snapshots by experiment id, including those of events that gave only an assignment id."""
    by_id = {r.experiment_id: r for r in snapshots.values() if r is not None}
    missing = {a.experiment_id for a in found["id"].values()} - set(by_id)
    if missing:
        for key in experiment_keys(database, missing):
            snapshot = cache.get(database=database, key=key)
            by_id[snapshot.experiment_id] = snapshot
    return by_id


def _assignments(writer: GroupCommitWriter, snapshots, events) -> dict:
    """The assignments the events may refer to: by id, and by (experiment id, unit id), a
    unit's decisions in the order they were made."""
    ids = sorted({e.assignment_id for e in events if e.assignment_id})
    units: dict[str, set[str]] = defaultdict(set)  # by experiment key
    for event in events:
        if not event.assignment_id and event.unit_id and snapshots.get(event.experiment):
            units[event.experiment].add(event.unit_id)
    by_id, of_units = find_assignments(
        writer,
        ids,
        [
            (snapshots[key].experiment_id, snapshots[key].stickiness == "unit", sorted(unit_ids))
            for key, unit_ids in units.items()
        ],
    )
    by_unit: dict[tuple[int, str], list[StoredAssignment]] = defaultdict(list)
    for found in of_units:
        by_unit[(found.experiment_id, found.unit_id)].append(found)
    for decisions_of_unit in by_unit.values():
        decisions_of_unit.sort(key=lambda a: a.assigned_at)
    return {"id": by_id, "unit": by_unit}


def _attribute(event: OutcomeEvent, snapshots, by_id, found, now: datetime) -> OutcomeRow:
    occurred = event.occurred_at or now
    snapshot = snapshots.get(event.experiment) if event.experiment else None
    if event.experiment and snapshot is None:
        return _unattributed(event, occurred, now, UNKNOWN_EXPERIMENT)
    experiment_id = snapshot.experiment_id if snapshot else None
    if event.assignment_id:
        assigned = found["id"].get(event.assignment_id)
        if assigned is None:
            return _unattributed(event, occurred, now, UNKNOWN_ASSIGNMENT, experiment_id)
        if snapshot is not None and assigned.experiment_id != snapshot.experiment_id:
            return _unattributed(event, occurred, now, OTHER_EXPERIMENT, experiment_id)
        if event.unit_id is not None and event.unit_id != assigned.unit_id:
            return _unattributed(event, occurred, now, OTHER_UNIT, experiment_id)
        if snapshot is None:  # the assignment says which experiment
            snapshot = by_id.get(assigned.experiment_id)
    else:
        candidates = found["unit"].get((experiment_id, event.unit_id))
        if not candidates:
            return _unattributed(event, occurred, now, UNKNOWN_UNIT, experiment_id)
        if len(candidates) == 1:  # a sticky unit: its one assignment
            assigned = candidates[0]
        else:  # decisions: the latest at or before the event, else the first
            earlier = [a for a in candidates if a.assigned_at <= occurred]
            assigned = earlier[-1] if earlier else candidates[0]
    experiment_id = assigned.experiment_id
    if snapshot is None:
        return _unattributed(event, occurred, now, UNKNOWN_EXPERIMENT, experiment_id, assigned.id)
    metric_type = snapshot.metric_types.get(event.metric)
    if metric_type is None:
        return _unattributed(event, occurred, now, UNKNOWN_METRIC, experiment_id, assigned.id)
    if occurred < assigned.assigned_at:
        return _unattributed(event, occurred, now, BEFORE_ASSIGNMENT, experiment_id, assigned.id)
    delay = (occurred - assigned.assigned_at).total_seconds()
    if delay > snapshot.attribution_window_hours * 3600:
        return _unattributed(event, occurred, now, AFTER_WINDOW, experiment_id, assigned.id)
    binary = metric_type == "binary"
    # Positional arguments: this runs once per event, and keywords cost a third more.
    return OutcomeRow(
        event.event_id,
        experiment_id,
        assigned.id,
        assigned.unit_id,
        event.metric,
        event.value,
        occurred,
        now,
        None,
        UnitDelta(
            assigned.id,
            experiment_id,
            event.metric,
            binary,
            event_amount(binary, event.value),
            occurred,
            delay,
            assigned.arm,
        ),
    )


def _unattributed(
    event: OutcomeEvent,
    occurred: datetime,
    now: datetime,
    reason: str,
    experiment_id: int | None = None,
    assignment_id: str | None = None,
) -> OutcomeRow:
    return OutcomeRow(
        event_id=event.event_id,
        experiment_id=experiment_id,
        assignment_id=assignment_id,
        unit_id=event.unit_id,
        metric=event.metric,
        value=event.value,
        occurred_at=occurred,
        received_at=now,
        reason=reason,
        delta=None,
    )
