"""Engine settings: SQLite's WAL, busy timeout and foreign keys; PostgreSQL via psycopg."""

import os
import sqlite3
import stat

import pytest
from sqlalchemy import text

from experiments.storage.database import SQLITE_BUSY_TIMEOUT_MS, Database, normalise_url


def test_sqlite_uses_wal_busy_timeout_and_foreign_keys(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/nested/dir/k.sqlite3")
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (tmp_path / "nested" / "dir" / "k.sqlite3").exists()
    database.dispose()


def test_write_sessions_take_the_sqlite_write_lock_at_begin(tmp_path):
    path = tmp_path / "k.sqlite3"
    database = Database(f"sqlite:///{path}")
    with database.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    with database.session(write=True) as writer:
        writer.execute(text("SELECT count(*) FROM t"))  # a read, yet the lock is taken
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        assert other.execute("SELECT count(*) FROM t").fetchone() == (0,)  # WAL: reads go on
        writer.rollback()
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    with database.session() as reader:
        reader.execute(text("SELECT count(*) FROM t"))  # a read session takes no lock
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    other.close()
    database.dispose()


def test_bare_postgresql_urls_mean_psycopg3():
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"


def test_the_sqlite_file_and_its_wal_are_readable_by_their_owner_only(tmp_path):
    """It holds unit ids and what they did: 0600, like the secret key, whatever the umask."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "instance" / "kairos.sqlite3"
        database = Database(f"sqlite:///{path}")
        with database.session(write=True) as session:
            session.execute(text("CREATE TABLE t (x INTEGER)"))
            session.execute(text("INSERT INTO t VALUES (1)"))
            session.commit()
            modes = {
                name: stat.S_IMODE((path.parent / name).stat().st_mode)
                for name in ("kairos.sqlite3", "kairos.sqlite3-wal", "kairos.sqlite3-shm")
            }
        database.dispose()
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(modes, 0o600)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_world_readable_sqlite_file_made_earlier_is_narrowed(tmp_path):
    path = tmp_path / "kairos.sqlite3"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    Database(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
