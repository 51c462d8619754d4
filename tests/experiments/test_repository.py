"""Loading experiments (experiments/storage/repository.py): one error for a missing key; lists
newest first, filtered by status, paged, with the total count; on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest

from experiments.errors import NotFound
from experiments.storage.repository import get_experiment, list_experiments
from tests.utils.factories import make_experiment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_an_experiment_is_found_by_its_key(database):
    with database.session(write=True) as session:
        made = make_experiment(session, key="found")
        found = get_experiment(session=session, key="found")
        assert found.id == made.id
        assert [variant.key for variant in found.variants] == ["morning-push", "evening-email"]


def test_a_missing_key_is_not_found(database):
    with database.session() as session, pytest.raises(NotFound, match="'missing'"):
        get_experiment(session=session, key="missing")


def test_experiments_are_listed_newest_first_with_their_count(database):
    with database.session(write=True) as session:
        for i, key in enumerate(["first", "second", "third"]):
            experiment = make_experiment(session, key=key)
            experiment.created_at = T0 + timedelta(hours=i)
            if key != "second":
                experiment.status = "running"
            session.add(experiment)
        session.commit()
        items, count = list_experiments(session=session)
        assert ([e.key for e in items], count) == (["third", "second", "first"], 3)
        items, count = list_experiments(session=session, offset=1, limit=1)
        assert ([e.key for e in items], count) == (["second"], 3)
        items, count = list_experiments(session=session, status="running")
        assert ([e.key for e in items], count) == (["third", "first"], 2)
        assert list_experiments(session=session, status="concluded") == ([], 0)
