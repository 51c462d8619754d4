"""Where outcome ingestion's time goes, and the most these cores could give.

A diagnostic beside `bench_outcomes`, not a benchmark with a target (`make bench` skips it):

    python -m bench.ceiling_outcomes

The same events as bench_outcomes (60,000 units × 4 events, 1,000 a request, 10% repeats),
without HTTP, load generator or a write lock shared between processes:

1. one process ingests them in turn: the request's event checks (orjson + parse_event), then
   `ingest`, as the view calls it;
2. the database's own share: every statement of step 1 replayed alone, with the same
   parameters, on a copy of the database taken before step 1;
3. both cores at once: two processes, each with its own database file, each doing step 1.

Step 3 is a ceiling for the service on this machine: the service does the same work, and also
serves HTTP, shares the cores with its load generator and shares one write lock.
"""

import multiprocessing
import random
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import orjson

from api.outcomes.schemas import EventBatchSchema
from api.server import collect_as_served
from bench.bench_outcomes import EXPERIMENT, UNITS, build_bodies
from experiments import lifecycle
from experiments.assignment.assign import UnitRequest, assign
from experiments.outcomes.ingest import ingest
from experiments.snapshot import SnapshotCache
from experiments.spec import ExperimentSpec
from experiments.storage import migrate
from experiments.storage.database import Database
from experiments.storage.writer import GroupCommitWriter

CHECKPOINT_EVERY = 10  # commits between the replay's (untimed) WAL checkpoints


def prepare(folder: Path) -> tuple[Database, list[bytes], int]:
    """A database with the bench's experiment and its units assigned; the request bodies."""
    database = Database(f"sqlite:///{folder}/kairos.sqlite3")
    migrate.upgrade(database)
    with database.session(write=True) as session:
        lifecycle.create_experiment(session=session, spec=ExperimentSpec.from_dict(EXPERIMENT))
        lifecycle.start_experiment(session=session, key=EXPERIMENT["key"])
    rng = random.Random(11)
    units = [f"{rng.getrandbits(40):010x}-{i}" for i in range(UNITS)]
    cache = SnapshotCache()
    for start in range(0, UNITS, 10_000):
        part = units[start : start + 10_000]
        chunk = [UnitRequest(u, {"days_since_signup": 3}, None) for u in part]
        assign(database=database, cache=cache, experiment_key=EXPERIMENT["key"], units=chunk)
    bodies, _, sent = build_bodies(units)
    return database, bodies, sent


def ingest_all(database: Database, bodies: list[bytes]) -> tuple[float, float]:
    """Seconds spent checking the events, and in `ingest`, over every body in turn."""
    collect_as_served()  # as in the server: the figures are the server's
    cache = SnapshotCache()
    event_list = EventBatchSchema().fields["events"]
    parsing = storing = 0.0
    for body in bodies:
        started = time.perf_counter()
        events = event_list.deserialize(orjson.loads(body)["events"])
        parsed = time.perf_counter()
        ingest(database=database, cache=cache, events=events)
        storing += time.perf_counter() - parsed
        parsing += parsed - started
    return parsing, storing


class _RecordingCursor:
    def __init__(self, cursor, log: list):
        self._cursor, self._log = cursor, log

    def execute(self, sql, parameters=()):
        self._log.append((sql, parameters))
        return self._cursor.execute(sql, parameters)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


class _RecordingConnection:
    def __init__(self, connection, log: list):
        self._connection, self._log = connection, log

    def cursor(self):
        return _RecordingCursor(self._connection.cursor(), self._log)

    def commit(self):
        self._log.append(("COMMIT", ()))
        return self._connection.commit()

    def __getattr__(self, name):
        return getattr(self._connection, name)


@contextmanager
def recording(log: list):
    """Every statement the hot-path store runs, with its parameters, appended to `log`."""
    real = GroupCommitWriter._connection

    def connection(store, *, writer=False):
        return _RecordingConnection(real(store, writer=writer), log)

    with mock.patch.object(GroupCommitWriter, "_connection", connection):
        yield


def replay(path: Path, log: list) -> tuple[float, float]:
    """Seconds the statements take alone: outside write transactions, and inside them."""
    database = Database(f"sqlite:///{path}")  # configured as the service's connections are
    fairy = database.engine.raw_connection()
    fairy.detach()
    connection = fairy.dbapi_connection
    connection.execute("PRAGMA wal_autocheckpoint=0")  # the service checkpoints in background
    cursor = connection.cursor()
    reads = writes = 0.0
    inside, commits = False, 0
    for sql, parameters in log:
        started = time.perf_counter()
        if sql == "COMMIT":
            cursor.execute("COMMIT")
        else:
            cursor.execute(sql, parameters)
            cursor.fetchall()
        spent = time.perf_counter() - started
        if sql.startswith("BEGIN"):
            inside = True
        if inside:
            writes += spent
        else:
            reads += spent
        if sql == "COMMIT":
            inside, commits = False, commits + 1
            if commits % CHECKPOINT_EVERY == 0:
                cursor.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    connection.close()
    database.dispose()
    return reads, writes


def _one_of_two(barrier, results) -> None:
    with tempfile.TemporaryDirectory(prefix="kairos-ceiling-") as folder:
        database, bodies, sent = prepare(Path(folder))
        barrier.wait()
        started = time.perf_counter()
        ingest_all(database, bodies)
        results.put((sent, time.perf_counter() - started))
        database.dispose()


def both_cores() -> tuple[float, float]:
    """Events/s of two processes at once, each on its own database; their µs/event."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_one_of_two, args=(barrier, results)) for _ in range(2)]
    for process in processes:
        process.start()
    done = [results.get() for _ in processes]
    for process in processes:
        process.join()
    events = sum(sent for sent, _ in done)
    slowest = max(elapsed for _, elapsed in done)
    return events / slowest, 1e6 * sum(elapsed for _, elapsed in done) / events


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kairos-ceiling-") as folder:
        folder = Path(folder)
        print("assigning the units…", flush=True)
        database, bodies, sent = prepare(folder)
        database.dispose()
        shutil.copy(folder / "kairos.sqlite3", folder / "copy.sqlite3")
        database = Database(f"sqlite:///{folder}/kairos.sqlite3")
        log: list = []
        print("1. one process ingests every request in turn…", flush=True)
        with recording(log):
            parsing, storing = ingest_all(database, bodies)
        stored = database.engine.raw_connection()
        try:
            count = stored.execute("SELECT count(*) FROM outcome").fetchone()[0]
        finally:
            stored.close()
        database.dispose()
        print("2. the same statements replayed alone…", flush=True)
        reads, writes = replay(folder / "copy.sqlite3", log)
    print("3. two processes at once, a database each…", flush=True)
    together, each = both_cores()

    def per_event(seconds: float) -> str:
        return f"{1e6 * seconds / sent:.1f} µs/event"

    alone = parsing + storing
    print(f"\n{sent:,} events in {len(bodies)} requests ({count:,} distinct stored)")
    print(
        f"1. one core: checks {per_event(parsing)} + ingest {per_event(storing)} "
        f"= {per_event(alone)}: {sent / alone:,.0f} events/s"
    )
    print(
        f"2. the database's own work: {per_event(reads + writes)} "
        f"(look-ups outside the write lock {per_event(reads)}, write transactions "
        f"{per_event(writes)}); {len(log):,} statements"
    )
    print(
        f"3. both cores, no HTTP, no load generator, no shared lock: {together:,.0f} events/s "
        f"({each:.1f} µs/event in each process)"
    )
    print(f"   bench_outcomes' target, 25,000 events/s, is {25_000 / together:.0%} of it")


if __name__ == "__main__":
    main()
