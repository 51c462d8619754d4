"""SnapshotCache: on the real clock an entry is trusted for its ttl, with no query (the
single-assignment hot path); a request on a simulated clock re-checks the stamp every time."""

from contextlib import contextmanager

import pytest
from sqlalchemy import event

from experiments.lifecycle import pause_experiment, start_experiment
from experiments.snapshot import SnapshotCache
from tests.utils.factories import FACTORIAL, make_experiment

KEY = FACTORIAL["key"]


@contextmanager
def queries_of_experiments(database):
    """The statements that read the experiment table while the block runs."""
    seen: list[str] = []

    def record(connection, cursor, statement, *args):
        if "FROM experiment" in statement:
            seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


@pytest.fixture
def cached(database):
    """A running experiment, its snapshot cached for a minute."""
    with database.session(write=True) as session:
        make_experiment(session, FACTORIAL)
        start_experiment(session=session, key=KEY)
    cache = SnapshotCache(ttl=60)
    return cache, cache.get(database=database, key=KEY)


def test_within_its_ttl_an_entry_is_answered_without_a_query(database, cached):
    cache, snapshot = cached
    with queries_of_experiments(database) as seen:
        assert cache.get(database=database, key=KEY) is snapshot
    assert seen == []


def test_revalidating_an_unchanged_entry_costs_one_stamp_query(database, cached):
    cache, snapshot = cached
    with queries_of_experiments(database) as seen:
        assert cache.get(database=database, key=KEY, revalidate=True) is snapshot
    assert len(seen) == 1


def test_revalidating_sees_a_change_made_within_the_ttl(database, cached):
    cache, _ = cached
    with database.session(write=True) as session:
        pause_experiment(session=session, key=KEY)
    assert cache.get(database=database, key=KEY).status == "running"  # trusted for its ttl
    assert cache.get(database=database, key=KEY, revalidate=True).status == "paused"
