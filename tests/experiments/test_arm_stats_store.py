"""The arm-statistics upsert (experiments/storage/arm_stats.py), exercised directly: the first
row of an arm is inserted whole, later ones add their named columns only; on SQLite and
PostgreSQL."""

import pytest
from sqlmodel import select

from experiments.storage.arm_stats import ARM_STATS_COLUMNS, arm_stats_upsert
from experiments.storage.tables import ArmStats
from experiments.storage.writer import GroupCommitWriter, values_statements
from tests.utils.factories import make_experiment


@pytest.fixture
def experiment_id(database) -> int:
    with database.session(write=True) as session:
        return make_experiment(session).id


def upsert(database, added: tuple[str, ...], *rows: tuple) -> None:
    writer = GroupCommitWriter.of(database)
    head, tail = arm_stats_upsert(*added)

    def work(transaction):
        for sql, params in values_statements(head, tail, list(rows), postgres=writer.postgres):
            transaction.cursor.execute(sql, params)

    writer.run(work)


def test_the_upsert_names_every_column_and_adds_only_those_given():
    head, tail = arm_stats_upsert("units", "assigned_seconds")
    assert head == f"INSERT INTO arm_stats ({', '.join(ARM_STATS_COLUMNS)})"
    assert tail == (
        "ON CONFLICT (experiment_id, period, segment, variant, metric) DO UPDATE SET "
        "units = arm_stats.units + excluded.units, "
        "assigned_seconds = arm_stats.assigned_seconds + excluded.assigned_seconds"
    )


def test_a_new_arm_is_inserted_and_later_rows_add_to_it(database, experiment_id):
    arm = (experiment_id, 0, "all", "morning-push", "activated")
    upsert(database, ("units", "assigned_seconds"), (*arm, 2, 0, 0.0, 0.0, 200.0))
    upsert(database, ("conversions", "sum", "sum_squares"), (*arm, 99, 1, 1.0, 1.0, 99.0))
    upsert(database, ("units", "assigned_seconds"), (*arm, 1, 99, 99.0, 99.0, 50.0))
    with database.session() as session:
        (row,) = session.exec(select(ArmStats)).all()
    assert (row.units, row.conversions, row.sum, row.sum_squares, row.assigned_seconds) == (
        3,
        1,
        1.0,
        1.0,
        250.0,
    )
