"""The group-commit writer (experiments/storage/writer.py), exercised directly: several threads'
work in one transaction, one failing work failing alone, deadlocks run again; on SQLite and
PostgreSQL, with the write-lock file's queueing on SQLite."""

import fcntl
import shutil
import threading
import time

import pytest

from experiments.storage.database import Database
from experiments.storage.writer import GroupCommitWriter


@pytest.fixture
def sqlite_database(tmp_path, sqlite_template):
    path = tmp_path / "kairos.sqlite3"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


def make_work(name: str, fail: bool = False):
    def work(transaction):
        mark = "%s" if transaction.postgres else "?"
        transaction.cursor.execute(
            "INSERT INTO api_key (name, token_hash, prefix, scopes, created_at) "
            f"VALUES ({mark}, {mark}, 'k', 'read', '2026-01-01 00:00:00.000000')",
            (name, f"hash-{name}"),
        )
        if fail:
            raise ValueError(f"{name} is bad")
        return name

    return work


def run_queued(writer, works: dict) -> tuple[dict, dict]:
    """Hand in every work from its own thread while another process holds the write lock,
    then release it: the works queue up meanwhile. Returns (results, errors) by name."""
    results, errors = {}, {}

    def run(name):
        try:
            results[name] = writer.run(works[name])
        except ValueError as error:
            errors[name] = str(error)

    with open(writer.lock_path, "a+b") as other_process:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        threads = [threading.Thread(target=run, args=(name,)) for name in works]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        fcntl.flock(other_process, fcntl.LOCK_UN)
        for thread in threads:
            thread.join(10)
    return results, errors


def names(database) -> set[str]:
    with database.engine.connect() as conn:
        return {row[0] for row in conn.exec_driver_sql("SELECT name FROM api_key")}


def test_work_handed_in_while_the_lock_is_held_commits_as_one_group(sqlite_database):
    writer = GroupCommitWriter.of(sqlite_database)
    commits = []
    original = writer._transaction

    def counting_transaction():
        commits.append(1)
        return original()

    writer._transaction = counting_transaction
    results, _ = run_queued(writer, {f"key-{i}": make_work(f"key-{i}") for i in range(6)})
    assert results == {f"key-{i}": f"key-{i}" for i in range(6)}
    assert names(sqlite_database) == set(results)
    assert len(commits) < 6  # grouped: fewer transactions than works


def test_a_failing_work_fails_alone_and_the_others_commit(sqlite_database):
    writer = GroupCommitWriter.of(sqlite_database)
    works = {f"key-{i}": make_work(f"key-{i}", fail=i == 2) for i in range(5)}
    results, errors = run_queued(writer, works)
    assert errors == {"key-2": "key-2 is bad"}
    assert set(results) == {"key-0", "key-1", "key-3", "key-4"}
    assert names(sqlite_database) == set(results)  # the bad work's row was rolled back


def test_alone_a_work_commits_at_once(database):
    writer = GroupCommitWriter.of(database)
    assert writer.run(make_work("solo")) == "solo"
    assert names(database) == {"solo"}
    with pytest.raises(ValueError, match="bad"):
        writer.run(make_work("bad", fail=True))
    assert names(database) == {"solo"}


def test_work_handed_in_while_a_group_writes_commits_in_the_next_and_fails_alone(database):
    """On either database: while one work's transaction is open, the works handed in queue up;
    the next group writes them together, and its failing work is rolled back alone."""
    writer = GroupCommitWriter.of(database)
    writing = threading.Event()
    release = threading.Event()
    results, errors = {}, {}

    def first(transaction):
        make_work("first")(transaction)
        writing.set()
        release.wait(10)
        return "first"

    def run(name, work):
        try:
            results[name] = writer.run(work)
        except ValueError as error:
            errors[name] = str(error)

    leader = threading.Thread(target=run, args=("first", first))
    leader.start()
    assert writing.wait(10)
    queued = [
        threading.Thread(target=run, args=(name, make_work(name, fail=name == "bad")))
        for name in ("a", "bad", "b")
    ]
    for thread in queued:
        thread.start()
    time.sleep(0.3)
    release.set()
    for thread in (leader, *queued):
        thread.join(10)
    assert results == {"first": "first", "a": "a", "b": "b"}
    assert errors == {"bad": "bad is bad"}
    assert names(database) == {"first", "a", "b"}


class Deadlock(Exception):
    sqlstate = "40P01"  # what psycopg's DeadlockDetected carries


def test_a_deadlocked_transaction_runs_again_and_commits_once(database):
    writer = GroupCommitWriter.of(database)
    attempts = []
    insert = make_work("retried")

    def work(transaction):
        insert(transaction)
        attempts.append(1)
        if len(attempts) < 3:
            raise Deadlock("deadlock detected")
        return "retried"

    assert writer.run(work) == "retried"
    assert len(attempts) == 3
    assert names(database) == {"retried"}  # the aborted attempts' rows were rolled back


def test_other_errors_are_not_run_again(database):
    writer = GroupCommitWriter.of(database)
    attempts = []
    failing = make_work("bad", fail=True)

    def work(transaction):
        attempts.append(1)
        return failing(transaction)

    with pytest.raises(ValueError):
        writer.run(work)
    assert len(attempts) == 1


def test_every_thread_writes_through_the_process_writer_connection(sqlite_database):
    writer = GroupCommitWriter.of(sqlite_database)
    used = []

    def work(transaction):
        used.append(transaction.cursor.connection)

    threads = [threading.Thread(target=writer.run, args=(work,)) for _ in range(3)]
    for thread in threads:
        thread.start()
        thread.join(10)
    assert len(used) == 3 and len({id(connection) for connection in used}) == 1
