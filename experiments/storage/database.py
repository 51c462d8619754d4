"""Engines and sessions for the embedded SQLite default and for PostgreSQL.

Nothing here runs at import time: `Database(url)` builds its engine when it is constructed.
"""

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str | URL) -> URL:
    """Parse a database URL; a bare ``postgresql://`` means the psycopg (v3) driver."""
    url = make_url(url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


# libpq settings unless the URL gives its own (`?connect_timeout=…`): a server that cannot be
# reached fails a connection in 5 s instead of the system's minutes, and one whose host or
# network died is noticed on an open connection within about half a minute (keepalives; sent
# data unacknowledged for 30 s), so the request answers 503 rather than waiting for ever.
POSTGRES_CONNECT = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def make_engine(url: str | URL) -> Engine:
    url = normalise_url(url)
    if url.get_backend_name() == "sqlite":
        return _make_sqlite_engine(url)
    # hide_parameters: an error's text (logged with a 500) never carries a request's values.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        hide_parameters=True,
        connect_args={k: v for k, v in POSTGRES_CONNECT.items() if k not in url.query},
    )


def _make_sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        keep_private(Path(url.database))
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        # We emit BEGIN ourselves (below), so the driver must not open transactions on its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Checkpoint the WAL every ~40 MB rather than every 4 MB: pages rewritten by many
        # small transactions (index leaves, counters) are then copied back once, not each time.
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        # Assignments are keyed by random ids and unit ids, so inserts land all over their
        # indexes: with SQLite's default 2 MB page cache most of them read pages back from the
        # OS, inside the write lock. A 64 MB cache and memory-mapped reads keep them in memory.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA mmap_size=268435456")
        # Temporary b-trees (what an upsert's RETURNING stages, sorts, GROUP BY) in memory, not
        # in temporary files: the outcome path's statements spent a tenth of their time there.
        cursor.execute("PRAGMA temp_store=MEMORY")
        # After a checkpoint restarts the WAL, cut the file back to 64 MB.
        cursor.execute("PRAGMA journal_size_limit=67108864")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        # A transaction that will write starts IMMEDIATE: it takes the write lock up front and
        # waits for it under busy_timeout. A DEFERRED one that upgrades from read to write after
        # another process committed fails at once with SQLITE_BUSY, busy_timeout or not.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def keep_private(path: Path) -> None:
    """Create the database file readable by its owner only (0600), before SQLite opens it: it
    holds unit ids and what they did. SQLite gives its -wal and -shm files the database file's
    permissions. A file made earlier with wider permissions is narrowed."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):  # gone meanwhile, or another user's file
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)


class Database:
    """One engine and the sessions made from it."""

    def __init__(self, url: str | URL):
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self._write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._on_dispose: list = []

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def new_session(self, *, write: bool = False) -> Session:
        """A session the caller closes; `write=True` for one that will change rows."""
        return Session(self._write_engine if write else self.engine, expire_on_commit=False)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        session = self.new_session(write=write)
        try:
            yield session
        finally:
            session.close()

    def ping(self) -> None:
        """Ask the database to answer one trivial query; raises SQLAlchemyError if it cannot."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def on_dispose(self, callback) -> None:
        """Call `callback` when this database is disposed (to close connections kept aside)."""
        self._on_dispose.append(callback)

    def dispose(self) -> None:
        for callback in self._on_dispose:
            callback()
        self.engine.dispose()


def dialect_insert(session, table):
    """An INSERT that knows `ON CONFLICT` in the session's dialect (SQLite or PostgreSQL)."""
    return dialect_insert_for(session.get_bind().dialect.name, table)


def dialect_insert_for(dialect: str, table):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)
