"""The Alembic migrations build exactly the schema the models describe, on both databases."""

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from experiments.learnings.search import Filters, search
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


def test_published_learnings_get_the_codes_of_their_notes(empty_database):
    """0014: a published learning's notes, one sentence a line, get their codes in order; a
    hand-written one's notes (a person's words) get none; the text search still finds them
    (the column is added in place, keeping SQLite's full-text triggers); and back."""
    migrate.upgrade(empty_database, "0013")
    notes = {
        "published": "The hierarchical PyMC job 3 did not converge (max R-hat 1.2, 3 "
        "divergences, bulk ESS 80; needed R-hat ≤ 1.01, no divergence, ESS ≥ 400): these are "
        "the conjugate results.\nFrom this experiment's own data: its results start from the "
        "registry's prior, which the registry already holds.\nP(better) 0.970, but not a "
        "discovery among the publication's 24 comparisons at a 5% false-discovery rate "
        "(always-valid p 0.12): with daily looks and this many comparisons, chance alone gets "
        "there.",
        "manual": "Twelve interviews: the job did not converge (max R-hat is their word).",
    }
    with empty_database.engine.begin() as connection:
        for source, text_ in notes.items():
            connection.execute(
                text(
                    "INSERT INTO learning (source, verdict, summary, hypothesis, notes, tags, "
                    "links, created_at, updated_at) VALUES (:source, 'inconclusive', '', '', "
                    ":notes, '[]', '[]', '2026-11-29', '2026-11-29')"
                ),
                {"source": source, "notes": text_},
            )
    migrate.upgrade(empty_database)

    def codes():
        with empty_database.engine.connect() as connection:
            rows = connection.execute(text("SELECT source, note_codes FROM learning ORDER BY id"))
            return [(source, json.loads(c) if isinstance(c, str) else c) for source, c in rows]

    assert codes() == [
        ("published", ["job_not_converged", "own_data", "not_a_discovery"]),
        ("manual", []),
    ]
    with empty_database.session() as session:
        found, total = search(session=session, filters=Filters(q="interviews"))
        assert total == 1 and found[0].note_codes == []
    migrate.downgrade(empty_database, "0013")
    with empty_database.engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("learning")}
        assert "note_codes" not in columns
        stored = connection.execute(text("SELECT notes FROM learning ORDER BY id")).scalars()
        assert list(stored) == list(notes.values())
