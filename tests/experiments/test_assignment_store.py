"""The assignment store (experiments/assignment/store.py), exercised directly through the
group-commit writer: insert first, a unit stored before keeps its first assignment, new units
counted into their arms; on SQLite and PostgreSQL."""

from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from experiments.assignment.assign import new_ids
from experiments.assignment.store import (
    add_units,
    insert_assignments,
    prepare_assignments,
    stored_assignments,
)
from experiments.storage.tables import ArmStats
from experiments.storage.writer import GroupCommitWriter
from tests.utils.factories import make_experiment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def experiment_id(database) -> int:
    with database.session(write=True) as session:
        return make_experiment(session).id


def rows(experiment_id: int, *units: str, variant: str = "morning-push") -> list[dict]:
    """New sticky assignments of these units, as assign() decides them."""
    return [
        {
            "id": assignment_id,
            "experiment_id": experiment_id,
            "unit_id": unit,
            "sticky_unit": unit,
            "variant": variant,
            "segment": "all",
            "period": 0,
            "propensity": 0.5,
            "holdout": False,
            "assigned_at": T0,
            "send_at": None,
        }
        for unit, assignment_id in zip(units, new_ids(len(units)), strict=True)
    ]


def insert(writer: GroupCommitWriter, candidates: list[dict]) -> set[str]:
    prepared = prepare_assignments(candidates, postgres=writer.postgres)
    return writer.run(lambda transaction: insert_assignments(transaction, prepared))


def stored(writer: GroupCommitWriter, experiment_id: int, units: list[str]) -> dict:
    return writer.run(lambda transaction: stored_assignments(transaction, experiment_id, units))


def test_new_units_are_inserted_and_read_back(database, experiment_id):
    writer = GroupCommitWriter.of(database)
    candidates = rows(experiment_id, "u-1", "u-2")
    assert insert(writer, candidates) == {row["id"] for row in candidates}
    found = stored(writer, experiment_id, ["u-1", "u-2", "u-unknown"])
    assert found == {
        row["unit_id"]: {
            "id": row["id"],
            "unit_id": row["unit_id"],
            "variant": "morning-push",
            "segment": "all",
            "period": 0,
            "propensity": 0.5,
            "holdout": False,
        }
        for row in candidates
    }


def test_a_unit_stored_before_keeps_its_first_assignment(database, experiment_id):
    writer = GroupCommitWriter.of(database)
    (first,) = rows(experiment_id, "u-1")
    assert insert(writer, [first]) == {first["id"]}
    again, new = rows(experiment_id, "u-1", "u-2", variant="evening-email")
    assert insert(writer, [again, new]) == {new["id"]}  # only the new unit went in
    found = stored(writer, experiment_id, ["u-1"])["u-1"]
    assert (found["id"], found["variant"]) == (first["id"], "morning-push")


def test_nothing_to_insert_inserts_nothing(database, experiment_id):
    writer = GroupCommitWriter.of(database)
    assert insert(writer, []) == set()
    assert stored(writer, experiment_id, []) == {}


def test_new_units_add_to_every_metric_of_their_arm(database, experiment_id):
    writer = GroupCommitWriter.of(database)
    metrics = ("activated", "unsubscribed")
    for counts, at in (
        (Counter({(0, "all", "morning-push"): 2}), 100.0),
        (Counter({(0, "all", "morning-push"): 1, (0, "all", "holdout"): 3}), 50.0),
    ):
        writer.run(
            lambda transaction, counts=counts, at=at: add_units(
                transaction, experiment_id, metrics, counts, at
            )
        )
    with database.session() as session:
        arms = {
            (a.variant, a.metric): (a.units, a.assigned_seconds, a.conversions, a.sum)
            for a in session.exec(select(ArmStats))
        }
    assert arms == {
        ("morning-push", "activated"): (3, 250.0, 0, 0.0),
        ("morning-push", "unsubscribed"): (3, 250.0, 0, 0.0),
        ("holdout", "activated"): (3, 150.0, 0, 0.0),
        ("holdout", "unsubscribed"): (3, 150.0, 0, 0.0),
    }
