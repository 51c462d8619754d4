"""Storage of outcome events, in plain DB-API calls, in SQLite's and PostgreSQL's dialects.

Outside the write lock, on the writer's read connection: which events are stored already, and
the assignments the events may refer to (`stored_event_ids`, `find_assignments`). Then one
transaction per request, grouped with other requests' by the group-commit writer
(experiments/storage/writer.py): insert the events (the unique event_id decides which are
new), add the new attributed ones to each assignment's running total per metric, and add the
change of those totals to the arm's statistics, as experiments/statistics/counting.py counts.
"""

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from experiments.statistics.counting import count_change
from experiments.storage.arm_stats import ARM_STATS_TYPES, arm_stats_upsert
from experiments.storage.database import Database
from experiments.storage.tables import Experiment
from experiments.storage.writer import (
    GroupCommitWriter,
    WriteTransaction,
    memoized_sqlite_time,
    unnest_statement,
    values_statements,
)
from experiments.vocabulary import HOLDOUT_ARM

OUTCOME_COLUMNS = (
    "event_id",
    "experiment_id",
    "assignment_id",
    "unit_id",
    "metric",
    "value",
    "occurred_at",
    "received_at",
    "attributed",
    "reason",
)
INSERT_OUTCOMES = f"INSERT INTO outcome ({', '.join(OUTCOME_COLUMNS)})"
OUTCOME_TYPES = (
    "varchar",
    "integer",
    "varchar",
    "varchar",
    "varchar",
    "double precision",
    "timestamptz",
    "timestamptz",
    "boolean",
    "varchar",
)
UNIT_METRIC_TYPES = (
    "varchar",
    "integer",
    "varchar",
    "double precision",
    "integer",
    "timestamptz",
    "double precision",
)
ADD_OUTCOMES = arm_stats_upsert("conversions", "sum", "sum_squares")
ASSIGNED = "id, experiment_id, unit_id, variant, segment, period, assigned_at"


def stored_event_ids(writer: GroupCommitWriter, event_ids: list[str]) -> set[str]:
    """Which of these event ids are stored already (read outside any write transaction)."""
    with writer.read() as cursor:
        return _stored_event_ids(cursor, event_ids, postgres=writer.postgres)


def _stored_event_ids(cursor, event_ids: list[str], *, postgres: bool) -> set[str]:
    if not event_ids:
        return set()
    if postgres:
        cursor.execute("SELECT event_id FROM outcome WHERE event_id = ANY(%s)", (event_ids,))
    else:
        cursor.execute(
            "SELECT event_id FROM outcome WHERE event_id IN (SELECT value FROM json_each(?))",
            (json.dumps(event_ids),),
        )
    return {row[0] for row in cursor.fetchall()}


@dataclass(slots=True)
class StoredAssignment:
    """What attribution needs of a stored assignment."""

    id: str
    experiment_id: int
    unit_id: str
    assigned_at: datetime
    arm: tuple[int, str, str]  # (period, segment, variant or the holdout's arm)


def find_assignments(
    writer: GroupCommitWriter, ids: list[str], units: list[tuple[int, bool, list[str]]]
) -> tuple[dict[str, StoredAssignment], list[StoredAssignment]]:
    """The stored assignments with these ids (by id), and those of these units: `units` holds
    (experiment id, unit stickiness?, unit ids); with unit stickiness, the units' sticky
    assignments, else their decisions.

    Read on the driver connection, outside the write lock: assignments never change once
    stored. (An assignment committed after this read is a unit unknown to this batch.)
    """
    postgres = writer.postgres
    among = "= ANY(%s)" if postgres else "IN (SELECT value FROM json_each(?))"
    mark = "%s" if postgres else "?"

    def values(items: list[str]):
        return items if postgres else json.dumps(items)

    times: dict = {}  # a batch of assignments shares its time: parsed once

    def assigned(row) -> StoredAssignment:
        at = row[6]
        if isinstance(at, str):
            parsed = times.get(at)
            if parsed is None:
                parsed = times[at] = datetime.fromisoformat(at).replace(tzinfo=UTC)
            at = parsed
        arm = (row[5], row[4], row[3] or HOLDOUT_ARM)
        return StoredAssignment(row[0], row[1], row[2], at, arm)

    by_id: dict[str, StoredAssignment] = {}
    of_units: list[StoredAssignment] = []
    with writer.read() as cursor:
        if ids:
            cursor.execute(f"SELECT {ASSIGNED} FROM assignment WHERE id {among}", (values(ids),))
            for row in cursor.fetchall():
                by_id[row[0]] = assigned(row)
        for experiment_id, sticky, unit_ids in units:
            column = "sticky_unit" if sticky else "unit_id"
            decisions = "" if sticky else " AND sticky_unit IS NULL"
            cursor.execute(
                f"SELECT {ASSIGNED} FROM assignment WHERE experiment_id = {mark}{decisions} "
                f"AND {column} {among}",
                (experiment_id, values(unit_ids)),
            )
            of_units.extend(assigned(row) for row in cursor.fetchall())
    return by_id, of_units


def experiment_keys(database: Database, experiment_ids: set[int]) -> list[str]:
    """The keys of these experiments."""
    table = Experiment.__table__
    with database.engine.connect() as connection:
        return list(
            connection.execute(select(table.c.key).where(table.c.id.in_(experiment_ids))).scalars()
        )


@dataclass(slots=True)
class UnitDelta:
    """What one attributed event adds to its assignment's total of its metric."""

    assignment_id: str
    experiment_id: int
    metric: str
    binary: bool
    amount: float
    occurred_at: datetime
    delay_seconds: float
    arm: tuple[int, str, str]  # (period, segment, variant or the holdout's arm)


@dataclass(slots=True)
class OutcomeRow:
    event_id: str
    experiment_id: int | None
    assignment_id: str | None
    unit_id: str | None
    metric: str
    value: float
    occurred_at: datetime
    received_at: datetime
    reason: str | None
    delta: UnitDelta | None

    @property
    def attributed(self) -> bool:
        return self.reason is None


class PreparedOutcomes:
    """A batch's statements, built before the write lock is taken: inside it only the
    database's work and the arithmetic that needs its answers remain."""

    def __init__(self, rows: list[OutcomeRow], postgres: bool):
        self.rows = rows
        self.postgres = postgres
        self.when = (lambda moment: moment) if postgres else memoized_sqlite_time()
        when = self.when
        params = [
            (
                r.event_id,
                r.experiment_id,
                r.assignment_id,
                r.unit_id,
                r.metric,
                float(r.value),  # one type for PostgreSQL's array of values
                when(r.occurred_at),
                when(r.received_at),
                r.attributed if postgres else int(r.attributed),
                r.reason,
            )
            for r in _in_key_order(rows, lambda r: r.event_id, postgres)
        ]
        self.params = params
        # SQLite answers which rows were new by its count of changes: RETURNING would stage
        # every row in a temporary table and hand it back, inside the write lock, for the
        # rare batch in which some event was stored by another request since the look-up
        # outside the lock (see write_outcomes).
        self.outcome_statements = (
            [
                unnest_statement(
                    INSERT_OUTCOMES,
                    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                    params,
                    OUTCOME_TYPES,
                )
            ]
            if postgres
            else values_statements(INSERT_OUTCOMES, "ON CONFLICT (event_id) DO NOTHING", params)
        )
        # Folded as if every event is new, the usual case; redone inside if some were not.
        self.folded = _Folded([r.delta for r in rows if r.delta is not None], postgres, when)


def write_outcomes(transaction: WriteTransaction, prepared: PreparedOutcomes) -> set[str]:
    """Store the rows whose event_id is new; fold the new attributed ones into the statistics.
    Returns the event ids stored."""
    cursor = transaction.cursor
    inserted = (
        _insert_postgres(cursor, prepared)
        if prepared.postgres
        else _insert_sqlite(cursor, prepared)
    )
    folded = prepared.folded
    if len(inserted) < len(prepared.rows):  # some were stored meanwhile, by another request
        deltas = [r.delta for r in prepared.rows if r.delta is not None and r.event_id in inserted]
        folded = _Folded(deltas, prepared.postgres, prepared.when)
    folded.write(cursor)
    return inserted


def _in_key_order(items, key, postgres: bool):
    """PostgreSQL: the items in key order, as every write here. Two transactions inserting
    the same new ids (or updating the same rows) in opposite orders would each wait for the
    other: a deadlock. SQLite has one writer at a time, and is spared the sort."""
    return sorted(items, key=key) if postgres else items


def _insert_postgres(cursor, prepared: PreparedOutcomes) -> set[str]:
    inserted: set[str] = set()
    for sql, values in prepared.outcome_statements:
        cursor.execute(sql, values)
        inserted.update(row[0] for row in cursor.fetchall())
    return inserted


def _insert_sqlite(cursor, prepared: PreparedOutcomes) -> set[str]:
    """Insert every row; if some event was stored meanwhile (fewer changes than rows), undo
    and insert only the events not stored. We hold the write lock: nobody else writes."""
    connection = cursor.connection
    cursor.execute("SAVEPOINT outcomes")
    before = connection.total_changes
    for sql, values in prepared.outcome_statements:
        cursor.execute(sql, values)
    if connection.total_changes - before == len(prepared.rows):
        cursor.execute("RELEASE outcomes")
        return {row.event_id for row in prepared.rows}
    cursor.execute("ROLLBACK TO outcomes")
    cursor.execute("RELEASE outcomes")
    stored = _stored_event_ids(cursor, [row.event_id for row in prepared.rows], postgres=False)
    fresh = [params for params in prepared.params if params[0] not in stored]
    for sql, values in values_statements(INSERT_OUTCOMES, "", fresh):
        cursor.execute(sql, values)
    return {params[0] for params in fresh}


class _Folded:
    def __init__(self, deltas: list[UnitDelta], postgres: bool, when):
        self.postgres = postgres
        # One row per (assignment, metric): an upsert may not touch a row twice in a statement.
        merged: dict[tuple[str, str], dict] = {}
        for d in deltas:
            key = (d.assignment_id, d.metric)
            entry = merged.get(key)
            if entry is None:
                merged[key] = {"delta": d, "amount": d.amount, "events": 1, "first": d}
            else:
                entry["amount"] += d.amount
                entry["events"] += 1
                if d.occurred_at < entry["first"].occurred_at:
                    entry["first"] = d
        self.merged = merged

        smallest = "LEAST" if postgres else "min"
        params = [
            (
                assignment_id,
                e["delta"].experiment_id,
                metric,
                float(e["amount"]),
                e["events"],
                when(e["first"].occurred_at),
                float(e["first"].delay_seconds),
            )
            for (assignment_id, metric), e in _in_key_order(merged.items(), None, postgres)
        ]
        head = (
            "INSERT INTO unit_metric (assignment_id, experiment_id, metric, total, events, "
            "first_at, delay_seconds)"
        )
        tail = (
            "ON CONFLICT (assignment_id, metric) DO UPDATE SET "
            "total = unit_metric.total + excluded.total, "
            "events = unit_metric.events + excluded.events, "
            f"first_at = {smallest}(unit_metric.first_at, excluded.first_at), "
            f"delay_seconds = {smallest}(unit_metric.delay_seconds, excluded.delay_seconds) "
            "RETURNING assignment_id, metric, total, events"
        )
        self.unit_statements = (
            [unnest_statement(head, tail, params, UNIT_METRIC_TYPES)]
            if postgres
            else values_statements(head, tail, params)
        )

    def write(self, cursor) -> None:
        if not self.merged:
            return
        totals: dict[tuple[str, str], tuple[float, int]] = {}
        for sql, values in self.unit_statements:
            cursor.execute(sql, values)
            totals.update(((a, m), (t, n)) for a, m, t, n in cursor.fetchall())
        # The change of each unit's total, as the arm's statistics see it.
        arms: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        for key, e in self.merged.items():
            new_total, new_events = totals[key]
            d = e["delta"]
            count_change(
                arms[(d.experiment_id, *d.arm, d.metric)],
                d.binary,
                new_total - e["amount"],
                new_total,
                new_events - e["events"],
            )
        params = [
            (experiment_id, period, segment, variant, metric, 0, c, float(s), float(q), 0.0)
            for (experiment_id, period, segment, variant, metric), (c, s, q) in _in_key_order(
                arms.items(), None, self.postgres
            )
            if c or s or q
        ]
        head, tail = ADD_OUTCOMES
        if self.postgres:
            if params:
                cursor.execute(*unnest_statement(head, tail, params, ARM_STATS_TYPES))
            return
        for sql, values in values_statements(head, tail, params):
            cursor.execute(sql, values)
