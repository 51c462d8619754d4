"""The group-commit writer: every write transaction of the hot paths, in plain DB-API calls.

Assignments and outcomes arrive many times a second, each as one short transaction. Through
SQLAlchemy a transaction costs about 0.4 ms of Python before the database does anything; on
the raw driver connection (still taken from SQLAlchemy's pool) it costs about 0.05 ms. So these
paths speak SQL directly, in the two dialects Kairos supports; everything else goes through
SQLModel. This module knows nothing of what is written: it owns the connections, the write
lock, WAL checkpoints, group commit and the retries, and hands each work a `WriteTransaction`.
The statements live beside their services (experiments/assignment/store.py,
experiments/outcomes/store.py), built with the helpers below (`values_statements`,
`memoized_sqlite_time`).

The rows written are the same as SQLModel would write: on SQLite, times are stored as naive
UTC text in SQLAlchemy's format, so the ORM reads them back unchanged.
"""

import contextlib
import fcntl
import logging
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from experiments.storage.database import Database
from experiments.telemetry import waiting_for_write_lock

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECKPOINT_SECONDS = 1.0
RESTART_FRAMES = 10_000  # ~40 MB of 4 KiB pages, as wal_autocheckpoint was
DEADLOCK_RETRIES = 5
# PostgreSQL: the group transactions of every process and node take this advisory lock first
# (see `_transaction`).
WRITE_LOCK_KEY = 0x4B41_4952  # "KAIR"


def sqlite_time(moment: datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite DateTime stores it (what UTCDateTime reads back)."""
    if moment is None:
        return None
    # Same text as strftime("%Y-%m-%d %H:%M:%S.%f"), in a third less time.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def memoized_sqlite_time():
    """sqlite_time with a memory: a batch repeats the same few times many times."""
    formatted: dict = {None: None}

    def text(moment):
        found = formatted.get(moment)
        if found is None and moment is not None:
            found = formatted[moment] = sqlite_time(moment)
        return found

    return text


@cache
def sqlite_variable_limit() -> int:
    with contextlib.closing(sqlite3.connect(":memory:")) as connection:
        return connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


POSTGRES_PARAMETER_LIMIT = 65_535


def values_statements(
    head: str, tail: str, rows: list[tuple], *, postgres: bool = False
) -> list[tuple[str, list]]:
    """INSERT many rows as a few multi-row VALUES statements, not executemany.

    Why: the SQLite driver releases and retakes the GIL around each statement's step;
    executemany steps once per row, and each time the writer may wait for the GIL while
    other threads parse requests, all the while holding the database's write lock. A
    statement per few thousand rows keeps the lock's hold time to the database's own work.
    """
    if not rows:
        return []
    width = len(rows[0])
    limit = POSTGRES_PARAMETER_LIMIT if postgres else sqlite_variable_limit()
    chunk = max(1, limit // width)
    marker = "%s" if postgres else "?"
    one = "(" + ",".join([marker] * width) + ")"
    statements = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        statements.append(
            (
                f"{head} VALUES {','.join([one] * len(part))} {tail}",
                [value for row in part for value in row],
            )
        )
    return statements


def unnest_statement(
    head: str, tail: str, rows: list[tuple], types: tuple[str, ...]
) -> tuple[str, list]:
    """PostgreSQL: INSERT many rows as one statement of one array per column (`types`, the
    columns' SQL types), SELECT * FROM unnest(…), not a multi-row VALUES.

    Why: a VALUES of a thousand rows is ten thousand parameters. psycopg parses a query of
    more than 50 parameters anew at each execute (in Python, a few ms for such a statement),
    never prepares it, and the server parses and plans ten thousand expressions each time.
    The same rows as ten arrays are one short statement, the same text every time: psycopg
    prepares it on the server after a few runs, and the server only reads the arrays.
    """
    columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in types]
    arrays = ", ".join(f"%s::{sql_type}[]" for sql_type in types)
    return f"{head} SELECT * FROM unnest({arrays}) {tail}", columns


class GroupCommitWriter:
    """The hot paths' write transactions on one database, SQLite or PostgreSQL, committed in
    groups (see `run`); one per database (`of`).

    Each thread keeps one driver connection of its own, taken from the engine (so it was
    set up like any other: WAL, busy timeout, foreign keys) and detached from the pool:
    checking a connection in and out of the pool costs as much as the transaction.
    """

    _writers: "weakref.WeakKeyDictionary[Database, GroupCommitWriter]" = weakref.WeakKeyDictionary()

    def __init__(self, database: Database):
        self.database = database
        self.postgres = database.dialect == "postgresql"
        self._local = threading.local()
        self._writer = _Holder()
        self._connections: list = []
        self._lock_files: list = []
        self.lock_path = None
        if not self.postgres and database.url.database not in (None, "", ":memory:"):
            self.lock_path = f"{database.url.database}-kairos-write.lock"
        self._lock = threading.Lock()
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._group = threading.Condition()
        self._pending: list[_Ticket] = []
        self._writing = False
        database.on_dispose(self.close)

    @classmethod
    def of(cls, database: Database) -> "GroupCommitWriter":
        writer = cls._writers.get(database)
        if writer is None:
            writer = cls._writers[database] = cls(database)
        return writer

    def _write_lock(self):
        """SQLite only: this thread's handle on a lock file beside the database.

        SQLite's own wait for its write lock (busy_timeout) sleeps 1, 2, 5, 10… ms between
        tries, so writers that collide mostly sleep: throughput drops and p99 climbs to
        hundreds of ms. A blocking flock() on a file hands the lock over the moment it is
        released, between threads and between worker processes alike (each thread opens the
        file itself: flock belongs to an open file, not to a process).
        """
        handle = getattr(self._local, "lock_file", None)
        if handle is None:
            handle = self._local.lock_file = open(self.lock_path, "a+b")  # noqa: SIM115
            with self._lock:
                self._lock_files.append(handle)
        return handle

    def _connection(self, *, writer: bool = False):
        """This thread's connection for reads; with `writer`, the one for write transactions.

        On SQLite one connection per process does all the writing (only a group's leader
        writes, one at a time). Why: SQLite keeps a page cache per connection, and a
        connection that did not write the last commit starts its next transaction cold; with
        a connection per thread nearly every group did, and re-read the index pages it was
        about to change, inside the write lock.
        """
        holder = self._holder(writer)
        connection = getattr(holder, "connection", None)
        if connection is None:
            fairy = self.database.engine.raw_connection()
            fairy.detach()  # ours for the life of the thread (or process), not the pool's
            connection = holder.connection = fairy.dbapi_connection
            if self.lock_path is not None:
                # Checkpoints are the background thread's job (see _checkpoints).
                connection.execute("PRAGMA wal_autocheckpoint=0")
                self._start_checkpoints()
            with self._lock:
                self._connections.append(connection)
        return connection

    def _start_checkpoints(self) -> None:
        with self._lock:
            if self._checkpointer is not None:
                return
            self._stopping = threading.Event()
            self._checkpointer = threading.Thread(
                target=self._checkpoints, name="kairos-wal-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoints(self) -> None:
        """Copy the WAL back into the database file in the background, once a second.

        Why: SQLite's automatic checkpoint runs inside the commit that crosses its threshold,
        so inside our write lock: every ten batches or so, one request spent 100 ms or more
        copying pages while every other writer waited. Here a PASSIVE checkpoint, which runs
        alongside writers, copies the bulk outside the lock; then, once the WAL holds more
        than RESTART_FRAMES, a RESTART under the write lock copies the few frames written
        meanwhile and lets the next writer start the WAL over (without it the WAL never
        stops growing under steady writes). It gives up after 200 ms if a reader is in the
        way, and tries again a second later.
        """
        fairy = self.database.engine.raw_connection()
        fairy.detach()
        connection = fairy.dbapi_connection
        connection.execute("PRAGMA busy_timeout=200")
        try:
            while not self._stopping.wait(CHECKPOINT_SECONDS):
                try:
                    _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames >= RESTART_FRAMES:
                        with self._write_locked():
                            connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                except Exception:  # busy, or the database is closing: next time
                    log.debug("background checkpoint skipped", exc_info=True)
        finally:
            connection.close()

    def close(self) -> None:
        """Close every thread's connection (when the database is disposed)."""
        with self._lock:
            checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            self._stopping.set()
            checkpointer.join(timeout=10)
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(Exception):
                connection.close()
        with self._lock:
            lock_files, self._lock_files = self._lock_files, []
        for handle in lock_files:
            handle.close()
        self._local = threading.local()
        self._writer = _Holder()

    def _holder(self, writer: bool):
        """Where the connection lives: the process's writer (SQLite), else the thread's."""
        return self._writer if writer and not self.postgres else self._local

    def _discard(self, *, writer: bool = False) -> None:
        holder = self._holder(writer)
        connection = getattr(holder, "connection", None)
        holder.connection = None
        if connection is not None:
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)
            with contextlib.suppress(Exception):
                connection.close()

    @contextmanager
    def read(self) -> Iterator:
        """A cursor for reads outside any write transaction, on this thread's connection.

        A connection the server dropped (PostgreSQL restarted) is discarded, so that the next
        call opens a new one, and raised as SQLAlchemy's OperationalError with the connection
        invalidated, the API's 503, as the write path does. So is one that cannot be opened
        (the pool's raw connections raise the driver's own error)."""
        try:
            connection = self._connection()
        except Exception as error:
            if _connection_lost(error):
                raise OperationalError(None, None, error, connection_invalidated=True) from error
            raise
        cursor = connection.cursor()
        try:
            yield cursor
            cursor.close()
            if self.postgres:
                connection.rollback()  # psycopg opened a transaction for the reads
        except Exception as error:
            try:
                cursor.close()
                if self.postgres:
                    connection.rollback()
            except Exception:
                self._discard()  # broken: the next call opens a new one
            if _connection_lost(error):
                raise OperationalError(None, None, error, connection_invalidated=True) from error
            raise

    def run(self, work: "Callable[[WriteTransaction], T]") -> T:
        """Run `work` in a write transaction, committed together with the work other threads
        of this process hand in meanwhile (group commit).

        Why: every request's writes take the database's one write lock. Taken per request,
        the lock, BEGIN and COMMIT cost more than the statements, and a thread holding the lock
        also waits for the GIL after each database call while the others run Python, so the
        lock is held several times longer than the work inside it. Here one thread (the
        leader) takes the write lock, then the whole queue of work handed in meanwhile, and
        commits it in one transaction; the others wait for it. Under load, one lock and one
        commit serve several requests; alone, a request commits at once, as before. If any
        work of a group fails, the group is rolled back and each work is run again alone, so
        that one bad request fails alone.
        """
        ticket = _Ticket(work)
        with self._group:
            self._pending.append(ticket)
            while self._writing and not ticket.done:
                self._group.wait()
            leader = not ticket.done
            if leader:
                self._writing = True
        if not leader:
            return ticket.outcome()
        batch: list[_Ticket] = []
        try:
            with self._write_locked():
                with self._group:  # everything handed in while we waited for the lock
                    batch, self._pending = self._pending, []
                self._run_group(batch)
        finally:
            with self._group:
                self._writing = False
                for done in batch:
                    done.done = True
                if not ticket.done:  # the lock itself failed
                    ticket.done, ticket.error = True, RuntimeError("write lock unavailable")
                self._group.notify_all()
        return ticket.outcome()

    def _run_group(self, batch: list["_Ticket"]) -> None:
        try:
            results = self._attempt([ticket.work for ticket in batch])
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
            for ticket in batch:
                try:
                    ticket.result = self._attempt([ticket.work])[0]
                except Exception as alone:
                    ticket.error = alone
            return
        for ticket, result in zip(batch, results, strict=True):
            ticket.result = result

    def _attempt(self, works: list) -> list:
        """Run the works in one transaction; on PostgreSQL, again if it deadlocked.

        Why: rows are written in key order, but a group's works each write their own rows
        in turn, so two groups may still lock the same rows in opposite orders. PostgreSQL
        then aborts one of them; the works are pure functions of what they were given, so
        running them again in a new transaction is safe.
        """
        lost = False
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                with self._transaction() as transaction:
                    return [work(transaction) for work in works]
            except Exception as error:
                # A connection the server dropped (PostgreSQL restarted): once more on a new
                # one, safe as every work's writes are idempotent; still down, the database is
                # unavailable (the API's 503), not a bug.
                if _connection_lost(error) and not lost:
                    lost = True
                    log.warning("write connection lost (%s); retried on a new one", error)
                    continue
                if attempt < DEADLOCK_RETRIES and _retryable(error):
                    log.info("write transaction retried after %s", type(error).__name__)
                    time.sleep(random.uniform(0, 0.005 * 2**attempt))
                    continue
                if _connection_lost(error):
                    raise OperationalError(
                        None, None, error, connection_invalidated=True
                    ) from error
                raise
        raise AssertionError("unreachable")

    @contextmanager
    def _write_locked(self) -> Iterator[None]:
        if self.lock_path is None:
            yield
            return
        lock = self._write_lock()
        with waiting_for_write_lock():
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def _transaction(self) -> Iterator["WriteTransaction"]:
        connection = self._connection(writer=True)
        try:
            cursor = connection.cursor()
            if not self.postgres:
                # IMMEDIATE: take the write lock now, so that nobody stores the same new unit
                # between our look-up and our insert (see experiments/storage/database.py).
                cursor.execute("BEGIN IMMEDIATE")
            else:
                # One group at a time across processes and nodes: groups add to the same
                # arm_stats rows in different orders, and deadlocked (each deadlock stalled
                # every writer for deadlock_timeout, 1 s); serialised, none waits that long.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            yield WriteTransaction(cursor, self.postgres)
            connection.commit()
        except BaseException as error:
            try:
                connection.rollback()
            except Exception:
                self._discard(writer=True)  # broken: the next call opens a new one
                raise error from None
            if isinstance(error, self.database.engine.dialect.dbapi.OperationalError):
                self._discard(writer=True)
            raise


def _connection_lost(error: Exception) -> bool:
    """A PostgreSQL connection that is gone: psycopg's OperationalError with no SQLSTATE (the
    server closed it, or cannot be reached) or one of class 08, not an error of a statement."""
    if type(error).__name__ != "OperationalError" or not type(error).__module__.startswith(
        "psycopg"
    ):
        return False
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08")


def _retryable(error: Exception) -> bool:
    """A PostgreSQL deadlock or serialization failure: the transaction may simply run again."""
    return getattr(error, "sqlstate", None) in ("40P01", "40001")


class _Holder:
    """The process's writer connection (SQLite), where a thread's would be in a local."""

    connection = None


class _Ticket:
    """One thread's work waiting for (or done by) a group's transaction."""

    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work):
        self.work = work
        self.done = False
        self.result = None
        self.error: Exception | None = None

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


class WriteTransaction:
    """What a work runs in: a cursor inside the group's transaction, and its dialect."""

    __slots__ = ("cursor", "postgres")

    def __init__(self, cursor, postgres: bool):
        self.cursor = cursor
        self.postgres = postgres
