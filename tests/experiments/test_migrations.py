"""The Alembic migrations build exactly the schema the models describe, on both databases."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from experiments.storage import migrate
from experiments.storage.database import Database
from tests.conftest import create_postgres_database
from tests.utils.factories import make_experiment


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path}/empty.sqlite3")
    else:
        server = request.getfixturevalue("postgres_url")
        database = Database(create_postgres_database(server, "kairos_migrations"))
    yield database
    database.dispose()


def schema_differences(database: Database) -> list:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": migrate.include_object}
        )
        return compare_metadata(context, SQLModel.metadata)


def test_upgrade_from_empty_matches_the_models(empty_database):
    migrate.upgrade(empty_database)
    assert migrate.is_up_to_date(empty_database)
    assert schema_differences(empty_database) == []


def test_upgrade_is_idempotent(empty_database):
    migrate.upgrade(empty_database)
    migrate.upgrade(empty_database)
    assert migrate.current_revision(empty_database) == migrate.head_revision(empty_database)


def test_downgrade_to_base_and_back(empty_database):
    migrate.upgrade(empty_database)
    migrate.downgrade(empty_database, "base")
    tables = set(inspect(empty_database.engine).get_table_names()) - {"alembic_version"}
    tables = {t for t in tables if not t.startswith(migrate.FTS_PREFIX)}
    assert tables == set()
    migrate.upgrade(empty_database)
    assert schema_differences(empty_database) == []


def test_the_old_default_threshold_of_caring_gives_way_to_the_relative_one(empty_database):
    """0012: an experiment stored with the old absolute default (0.001) moves to the relative
    default; one that chose its own absolute threshold keeps it; and back."""
    migrate.upgrade(empty_database)
    with empty_database.session(write=True) as session:
        make_experiment(session, key="took-the-default")
        make_experiment(session, key="chose-its-own", threshold_of_caring=0.005)
        session.commit()

    def thresholds():
        with empty_database.engine.connect() as connection:
            rows = connection.execute(text("SELECT * FROM experiment ORDER BY key")).mappings()
            return [
                (row["key"], row["threshold_of_caring"], row.get("relative_threshold_of_caring"))
                for row in rows
            ]

    assert thresholds() == [("chose-its-own", 0.005, 0.01), ("took-the-default", None, 0.01)]
    migrate.downgrade(empty_database, "0011")
    assert thresholds() == [("chose-its-own", 0.005, None), ("took-the-default", 0.001, None)]
    migrate.upgrade(empty_database)
    assert thresholds() == [("chose-its-own", 0.005, 0.01), ("took-the-default", None, 0.01)]
