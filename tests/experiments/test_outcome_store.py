"""The outcome store (experiments/outcomes/store.py), exercised directly through the
group-commit writer: an event stored once whatever the calls, the look-ups attribution needs,
and each unit's total and its arm's statistics moved by the counting rule, as a rebuild from
raw rows agrees; on SQLite and PostgreSQL."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from experiments.assignment.store import add_units, insert_assignments, prepare_assignments
from experiments.outcomes.store import (
    OutcomeRow,
    PreparedOutcomes,
    UnitDelta,
    experiment_keys,
    find_assignments,
    stored_event_ids,
    write_outcomes,
)
from experiments.statistics import audit
from experiments.statistics.counting import event_amount
from experiments.storage.tables import ArmStats, Experiment, UnitMetric
from experiments.storage.writer import GroupCommitWriter
from tests.utils.factories import experiment_body, make_experiment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ARM = (0, "all", "morning-push")
METRICS = (
    {"key": "activated", "type": "binary", "role": "primary"},
    {"key": "revenue", "type": "continuous", "role": "secondary"},
)


@pytest.fixture
def assigned(database) -> dict:
    """An experiment with one unit assigned (and counted into its arm): the assignment's row."""
    with database.session(write=True) as session:
        experiment = make_experiment(session, metrics=list(METRICS))
        experiment_id = experiment.id
        metrics = tuple(metric.key for metric in experiment.metrics)  # with those it adds
    row = {
        "id": "0" * 31 + "1",
        "experiment_id": experiment_id,
        "unit_id": "u-1",
        "sticky_unit": "u-1",
        "variant": ARM[2],
        "segment": ARM[1],
        "period": ARM[0],
        "propensity": 0.5,
        "holdout": False,
        "assigned_at": T0,
        "send_at": None,
    }
    writer = GroupCommitWriter.of(database)
    prepared = prepare_assignments([row], postgres=writer.postgres)

    def assign(transaction):
        insert_assignments(transaction, prepared)
        add_units(transaction, experiment_id, metrics, Counter({ARM: 1}), T0.timestamp())

    writer.run(assign)
    return row


def outcome(assigned: dict, event_id: str, metric: str, value: float, hours: int) -> OutcomeRow:
    """An attributed event `hours` after the assignment, as ingest makes it."""
    at = T0 + timedelta(hours=hours)
    binary = metric == "activated"
    delta = UnitDelta(
        assigned["id"],
        assigned["experiment_id"],
        metric,
        binary,
        event_amount(binary, value),
        at,
        hours * 3600.0,
        ARM,
    )
    return OutcomeRow(
        event_id,
        assigned["experiment_id"],
        assigned["id"],
        "u-1",
        metric,
        value,
        at,
        at,
        None,
        delta,
    )


def write(database, *rows: OutcomeRow) -> set[str]:
    writer = GroupCommitWriter.of(database)
    prepared = PreparedOutcomes(list(rows), writer.postgres)
    return writer.run(lambda transaction: write_outcomes(transaction, prepared))


def test_an_event_is_stored_once_across_two_calls(database, assigned):
    first = outcome(assigned, "e-1", "activated", 1.0, hours=1)
    assert write(database, first) == {"e-1"}
    assert write(database, first, outcome(assigned, "e-2", "activated", 1.0, hours=2)) == {"e-2"}
    writer = GroupCommitWriter.of(database)
    assert stored_event_ids(writer, ["e-1", "e-2", "e-3"]) == {"e-1", "e-2"}
    with database.session() as session:
        (unit,) = session.exec(select(UnitMetric)).all()
    assert (unit.total, unit.events) == (2.0, 2)  # e-1 counted once


def test_totals_and_arm_statistics_move_by_the_counting_rule(database, assigned):
    write(
        database,
        outcome(assigned, "e-1", "activated", 0.0, hours=1),  # not positive: no conversion
        outcome(assigned, "r-1", "revenue", 3.0, hours=1),
    )
    write(
        database,
        outcome(assigned, "e-2", "activated", 1.0, hours=2),  # converts
        outcome(assigned, "e-3", "activated", 1.0, hours=3),  # converted already
        outcome(assigned, "r-2", "revenue", 4.0, hours=2),
    )
    with database.session() as session:
        units = {
            u.metric: (u.total, u.events, u.delay_seconds) for u in session.exec(select(UnitMetric))
        }
        arms = {
            a.metric: (a.units, a.conversions, a.sum, a.sum_squares)
            for a in session.exec(select(ArmStats))
        }
        experiment = session.get(Experiment, assigned["experiment_id"])
        assert audit.differences(session, experiment) == []  # as a rebuild from raw rows
    assert units == {"activated": (2.0, 3, 3600.0), "revenue": (7.0, 2, 3600.0)}
    assert arms["activated"] == (1, 1, 1.0, 1.0)
    assert arms["revenue"] == (1, 1, 7.0, 49.0)


def test_the_look_ups_find_assignments_by_id_and_by_unit(database, assigned):
    writer = GroupCommitWriter.of(database)
    experiment_id = assigned["experiment_id"]
    by_id, of_units = find_assignments(
        writer, [assigned["id"], "unknown"], [(experiment_id, True, ["u-1", "u-2"])]
    )
    assert list(by_id) == [assigned["id"]]
    (found,) = of_units
    assert found == by_id[assigned["id"]]
    assert (found.unit_id, found.assigned_at, found.arm) == ("u-1", T0, ARM)
    assert find_assignments(writer, [], [(experiment_id, False, ["u-1"])]) == ({}, [])
    assert experiment_keys(database, {experiment_id}) == [experiment_body()["key"]]
