"""Faults, each a process or the database dying at a bad moment:
- `kairos serve` (gunicorn, 2 workers) killed with SIGKILL, master and workers at once, in the
  middle of mixed load (assignment batches, outcome batches with resends, reweights), then
  started again on the same SQLite file: every acknowledged assignment and event is there
  exactly once, the maintained statistics agree with a recount of the raw rows, the database
  passes its integrity check, and the restarted server answers;
- PostgreSQL stopped at once under an app node: 503 in the error shape, then recovery without
  a restart;
- a reweight killed in the middle of its write transaction (SQLite and PostgreSQL): the
  previous period stays in force, and the next reweight succeeds;
- `kairos worker` killed while it runs an analysis: another worker takes the job up once its
  heartbeat is stale, and finishes it.
Two app nodes under concurrent load, and PostgreSQL restarted under them, are in
test_concurrency.py."""

import sqlite3
import threading
import time
from contextlib import suppress

import pytest
import requests
from sqlalchemy import text

from api import create_app
from experiments.keys import create_key
from experiments.storage import migrate
from experiments.storage.database import Database
from experiments.storage.tables import AnalysisJob
from tests.conftest import create_postgres_database, get_database_of
from tests.pg import PostgresCluster
from tests.servers import kairos_serve, kill_minus_nine, run_kairos, start_worker
from tests.utils.assignments import assign_batch, start
from tests.utils.factories import experiment_body

CLIENTS, BATCH = 3, 200


class Load:
    """Clients sending assignment batches and outcome batches (every fourth batch resends the
    previous one) until stopped; what the server acknowledged is recorded."""

    def __init__(self, base: str, token: str, key: str):
        self.base, self.key = base, key
        self.headers = {"Authorization": f"Bearer {token}"}
        self.assigned: set[str] = set()
        self.events: set[str] = set()
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def client(self, n: int) -> None:
        session = requests.Session()
        batch = 0
        previous: list[dict] = []
        while not self.stop.is_set():
            batch += 1
            units = [{"unit_id": f"c{n}-b{batch}-u{i}"} for i in range(BATCH)]
            try:
                answer = session.post(
                    f"{self.base}/v1/assignments/batch",
                    json={"experiment": self.key, "units": units},
                    headers=self.headers,
                    timeout=10,
                )
                if answer.status_code != 200:
                    continue
                assignments = answer.json()["assignments"]
                with self.lock:
                    self.assigned.update(a["assignment_id"] for a in assignments)
                events = [
                    {
                        "event_id": f"e-{a['assignment_id']}",
                        "assignment_id": a["assignment_id"],
                        "metric": "activated",
                    }
                    for a in assignments[::3]
                ]
                if batch % 4 == 0:
                    events += previous  # a resend: stored once, counted once
                previous = events[:50]
                answer = session.post(
                    f"{self.base}/v1/outcomes/batch",
                    json={"events": events},
                    headers=self.headers,
                    timeout=10,
                )
                if answer.status_code == 202:
                    with self.lock:
                        self.events.update(e["event_id"] for e in events)
            except requests.RequestException:
                time.sleep(0.05)  # the server is down: try again, as a journey engine would

    def reweights(self) -> None:
        while not self.stop.wait(0.3):
            with suppress(requests.RequestException):
                requests.post(
                    f"{self.base}/v1/experiments/{self.key}/reweight",
                    headers=self.headers,
                    timeout=10,
                )

    def run(self, seconds: float, before_stop=None) -> None:
        threads = [threading.Thread(target=self.client, args=(n,)) for n in range(CLIENTS)]
        threads.append(threading.Thread(target=self.reweights))
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        if before_stop:
            before_stop()
        time.sleep(0.5)  # requests in flight during the kill fail and are not acknowledged
        self.stop.set()
        for thread in threads:
            thread.join(timeout=30)


def test_sigkill_during_mixed_load_loses_and_doubles_nothing(tmp_path):
    database, log = tmp_path / "kairos.sqlite3", tmp_path / "server.log"
    body = experiment_body(
        allocation="thompson", bandit={"min_units_per_arm": 5, "update_every_seconds": 60}
    )
    url = f"sqlite:///{database}"
    with kairos_serve(url, log) as served:
        base, token = served.base, served.admin_token()
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.post(f"{base}/v1/experiments", json=body, headers=headers).ok
        assert requests.post(f"{base}/v1/experiments/{body['key']}/start", headers=headers).ok
        load = Load(base, token, body["key"])
        load.run(4.0, before_stop=served.kill)
    assert load.assigned and load.events, log.read_text()

    with kairos_serve(url, log) as served:
        results = requests.get(
            f"{served.base}/v1/experiments/{body['key']}/results", headers=headers
        )
        assert results.status_code == 200, results.text

    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in connection.execute("SELECT id FROM assignment")}
        events = [row[0] for row in connection.execute("SELECT event_id FROM outcome")]
    assert load.assigned <= stored, len(load.assigned - stored)
    assert load.events <= set(events), len(load.events - set(events))
    assert len(events) == len(set(events))
    check = run_kairos(url, "stats", "check", body["key"])
    assert check.returncode == 0, check.stdout + check.stderr
    assert "statistics agree" in check.stdout
    print(
        f"acknowledged before the kill: {len(load.assigned):,} assignments, "
        f"{len(load.events):,} events; stored: {len(stored):,}, {len(events):,}"
    )


@pytest.mark.postgres
def test_an_app_node_rides_out_a_postgresql_restart(tmp_path):
    """PostgreSQL stopped at once (as a crash) under an app node: each request answers 503 in
    the error shape with Retry-After, stores nothing; once the server is back the same node
    answers again without a restart, and what it acknowledged before is there."""
    cluster = PostgresCluster()
    try:
        url = create_postgres_database(cluster.start(), "kairos_faults")
        database = Database(url)
        migrate.upgrade(database)
        with database.session(write=True) as session:
            _, token = create_key(session=session, name="admin", scopes=["admin"])
        database.dispose()
        # Two nodes: one re-reads every experiment and key (each request meets the database
        # first through SQLAlchemy), one keeps them cached (an outcome batch goes straight to
        # the write path's own connections).
        app, cached = (
            create_app(
                {
                    "TESTING": True,
                    "KAIROS_DATABASE_URL": url,
                    "SECRET_KEY": "x",
                    "KAIROS_CACHE_SECONDS": seconds,
                }
            )
            for seconds in (0, 600)
        )
        client, headers = app.test_client(), {"Authorization": f"Bearer {token}"}
        start(client, {"manage": headers}, experiment_body())
        units = [{"unit_id": f"u{i}"} for i in range(50)]
        before = assign_batch(client, headers, "onboarding-nudge", units)
        event = {"event_id": "e1", "assignment_id": before[0]["assignment_id"]}
        event["metric"] = "activated"
        warm = {"events": [{**event, "event_id": "e0"}]}
        warmed = cached.test_client().post("/v1/outcomes/batch", json=warm, headers=headers)
        assert warmed.status_code == 202

        cluster.halt()
        for path, body in (
            ("/v1/outcomes/batch", {"events": [event]}),
            ("/v1/assignments/batch", {"experiment": "onboarding-nudge", "units": units}),
        ):
            for answer in (
                cached.test_client().post(path, json=body, headers=headers),
                on_a_new_thread(cached, "POST", path, body, headers),
            ):
                assert answer.status_code == 503, (path, answer.status_code, answer.text)
        requests_while_down = (
            ("POST", "/v1/assignments/batch", {"experiment": "onboarding-nudge", "units": units}),
            # The fast lane's key look-up meets the database down: Flask answers.
            ("POST", "/v1/assignments", {"experiment": "onboarding-nudge", "unit_id": "u1"}),
            ("POST", "/v1/outcomes", event),
            ("POST", "/v1/outcomes/batch", {"events": [event]}),
            ("GET", "/v1/experiments/onboarding-nudge/results", None),
        )
        for method, path, body in requests_while_down:
            # On this thread (its connections were open when the server went) and on a new
            # one (whose first connection is refused).
            answers = [client.open(path, method=method, json=body, headers=headers)]
            answers.append(on_a_new_thread(app, method, path, body, headers))
            for answer in answers:
                assert answer.status_code == 503, (path, answer.status_code, answer.text)
                assert set(answer.json) == {"code", "status", "message", "errors"}
                assert answer.headers["Retry-After"] == "1"

        cluster.resume()
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        again = assign_batch(client, headers, "onboarding-nudge", units)
        assert [a["variant"] for a in again] == [a["variant"] for a in before]  # sticky
        results = client.get("/v1/experiments/onboarding-nudge/results", headers=headers)
        assert results.status_code == 200
        assert results.json["segments"][0]["units"] == len(units)
        get_database_of(app).dispose()
        get_database_of(cached).dispose()
    finally:
        cluster.stop()


def on_a_new_thread(app, method: str, path: str, body, headers: dict):
    answers = []
    thread = threading.Thread(
        target=lambda: answers.append(
            app.test_client().open(path, method=method, json=body, headers=headers)
        )
    )
    thread.start()
    thread.join()
    return answers[0]


# An interrupted reweight. The write that opens a period is short (an UPDATE of the experiment,
# an INSERT of the period), so to land a SIGKILL inside it, the test's database holds it open:
# a trigger after the period's INSERT waits on an advisory lock the test holds (PostgreSQL), or
# grinds through a cross join (SQLite, whose triggers can neither sleep nor wait). The kill
# comes only once the test has seen the transaction open and past the INSERT.
PAUSE_LOCK = 4242


@pytest.fixture
def fault_database_url(backend, tmp_path, request):
    """A migrated database of this test's own (a trigger is added to it)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/kairos.sqlite3"
    else:
        url = create_postgres_database(
            request.getfixturevalue("postgres_url"), "kairos_faults_reweight"
        )
    database = Database(url)
    migrate.upgrade(database)
    database.dispose()
    return url


def pause_after_period_insert(database: Database) -> None:
    with database.engine.begin() as connection:
        if database.dialect == "postgresql":
            connection.exec_driver_sql(
                "CREATE FUNCTION pause_reweight() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"PERFORM pg_advisory_lock({PAUSE_LOCK}); "
                f"PERFORM pg_advisory_unlock({PAUSE_LOCK}); RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER pause_reweight AFTER INSERT ON allocation_period "
                "FOR EACH ROW EXECUTE FUNCTION pause_reweight()"
            )
        else:
            connection.exec_driver_sql("CREATE TABLE pause_rows (n INTEGER)")
            connection.exec_driver_sql(
                "INSERT INTO pause_rows SELECT value FROM json_each(?)",
                (str(list(range(2_000))),),
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER pause_reweight AFTER INSERT ON allocation_period BEGIN "
                "SELECT count(*) FROM pause_rows a, pause_rows b, pause_rows c; END"
            )


def remove_pause(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.exec_driver_sql(
            "DROP TRIGGER pause_reweight"
            + (" ON allocation_period" if database.dialect == "postgresql" else "")
        )
        if database.dialect == "postgresql":
            connection.exec_driver_sql("DROP FUNCTION pause_reweight()")
        else:
            connection.exec_driver_sql("DROP TABLE pause_rows")


def paused_reweight_postgres(connection) -> int | None:
    """The backend of a reweight paused after its period's INSERT, with the experiment's row
    updated in the same open transaction; its pid, or None."""
    return connection.execute(
        text(
            "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
            "WHERE a.wait_event_type = 'Lock' AND a.wait_event = 'advisory' "
            "AND a.query LIKE 'INSERT INTO allocation_period%' AND a.backend_xid IS NOT NULL "
            "AND l.relation = 'experiment'::regclass AND l.mode = 'RowExclusiveLock'"
        )
    ).scalar_one_or_none()


def sqlite_write_lock_held(path: str) -> bool:
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:  # database is locked: a write transaction is open
        return True
    finally:
        connection.close()


def current_period(database: Database, key: str) -> tuple[int, list[tuple]]:
    """The experiment's current period number and all its period rows."""
    with database.engine.connect() as connection:
        experiment_id, number = connection.execute(
            text("SELECT id, current_period FROM experiment WHERE key = :key"), {"key": key}
        ).one()
        rows = connection.execute(
            text(
                "SELECT id, number, seed, weights FROM allocation_period "
                "WHERE experiment_id = :id ORDER BY number"
            ),
            {"id": experiment_id},
        ).all()
    return number, [tuple(row) for row in rows]


def test_a_reweight_killed_midway_leaves_the_previous_period_in_force(
    backend, fault_database_url, tmp_path
):
    url, log = fault_database_url, tmp_path / "server.log"
    body = experiment_body(
        allocation="thompson",
        bandit={"min_units_per_arm": 5, "update_every_seconds": 3600},
        holdout=0.0,
    )
    key = body["key"]
    database = Database(url)
    with kairos_serve(url, log, args=["--no-analysis-worker"]) as served:
        headers = {"Authorization": f"Bearer {served.admin_token()}"}
        base = served.base
        assert requests.post(f"{base}/v1/experiments", json=body, headers=headers).ok
        assert requests.post(f"{base}/v1/experiments/{key}/start", headers=headers).ok
        units = [{"unit_id": f"u{i}"} for i in range(300)]
        first = requests.post(
            f"{base}/v1/assignments/batch",
            json={"experiment": key, "units": units},
            headers=headers,
        ).json()["assignments"]
        reweighted = requests.post(f"{base}/v1/experiments/{key}/reweight", headers=headers)
        assert reweighted.status_code == 200, reweighted.text
        before = current_period(database, key)
        assert before[0] == 2 and len(before[1]) == 2

        pause_after_period_insert(database)
        holder = None
        if database.dialect == "postgresql":  # autocommit: each look at pg_stat_activity is fresh
            holder = database.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if holder is not None:
            holder.execute(text(f"SELECT pg_advisory_lock({PAUSE_LOCK})"))
        answers = []
        attempt = threading.Thread(
            target=lambda: answers.append(
                suppress_connection_errors(
                    requests.post, f"{base}/v1/experiments/{key}/reweight", headers=headers
                )
            )
        )
        attempt.start()
        # Mid-way: on PostgreSQL, the reweight's backend is seen waiting in the trigger with
        # its INSERT done and the experiment's row updated; on SQLite, the write lock is held
        # a whole second (a reweight's write takes milliseconds), and the reweight is the only
        # request in flight.
        deadline, held_since, paused = time.monotonic() + 20, None, None
        while paused is None and time.monotonic() < deadline:
            if holder is not None:
                paused = paused_reweight_postgres(holder)
            elif sqlite_write_lock_held(database.url.database):
                held_since = held_since or time.monotonic()
                paused = time.monotonic() - held_since >= 1.0 or None
            else:
                held_since = None
            time.sleep(0.05)
        assert paused, "the reweight was never seen mid-way"
        assert not answers  # it has not answered
        served.kill()
        attempt.join(timeout=30)
        assert answers == [None]  # the connection dropped: nothing was acknowledged
        if holder is not None:
            # The orphaned backend finishes its INSERT, finds its client gone, rolls back.
            holder.execute(text(f"SELECT pg_advisory_unlock({PAUSE_LOCK})"))
            deadline = time.monotonic() + 20
            while (
                time.monotonic() < deadline
                and holder.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": paused}
                ).scalar_one()
            ):
                time.sleep(0.05)
            holder.close()
    remove_pause(database)

    after = current_period(database, key)
    assert after == before  # the same period, same id, seed and weights; no half-written row
    with kairos_serve(url, log, args=["--no-analysis-worker"]) as served:
        base = served.base
        again = requests.post(
            f"{base}/v1/assignments/batch",
            json={"experiment": key, "units": [*units, {"unit_id": "new-unit"}]},
            headers=headers,
        ).json()["assignments"]
        assert [a["variant"] for a in again[:-1]] == [a["variant"] for a in first]  # sticky
        assert again[-1]["period"] == 2  # a new unit is assigned in the period in force
        reweighted = requests.post(f"{base}/v1/experiments/{key}/reweight", headers=headers)
        assert reweighted.status_code == 200, reweighted.text
        assert reweighted.json()["period"] == 3
    number, rows = current_period(database, key)
    assert number == 3 and [r[1] for r in rows] == [1, 2, 3] and rows[:2] == before[1]
    if database.dialect == "sqlite":
        with sqlite3.connect(database.url.database) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    database.dispose()


def suppress_connection_errors(call, *args, **kwargs):
    """The answer, or None if the connection dropped before one came."""
    try:
        return call(*args, **kwargs, timeout=60)
    except requests.ConnectionError:
        return None


@pytest.mark.slow
def test_an_analysis_job_whose_worker_was_killed_is_run_again(
    client, keys, database, database_url, tmp_path
):
    """`kairos worker` SIGKILLed while it samples: the job stays 'running' with a heartbeat
    that stops; once it is older than KAIROS_ANALYSIS_STALE_SECONDS another worker claims
    the job and runs it to 'succeeded' with a result."""
    start(client, keys, experiment_body(holdout=0.0))
    answers = assign_batch(
        client, keys["admin"], "onboarding-nudge", [{"unit_id": f"u{i}"} for i in range(400)]
    )
    events = [
        {"event_id": f"e{i}", "assignment_id": a["assignment_id"], "metric": "activated"}
        for i, a in enumerate(answers)
        if i % 4 == 0
    ]
    reported = client.post("/v1/outcomes/batch", json={"events": events}, headers=keys["assign"])
    assert reported.status_code == 202
    queued = client.post(
        "/v1/experiments/onboarding-nudge/analyses",
        json={"method": "hierarchical"},
        headers=keys["manage"],
    )
    job_id = queued.json["id"]

    def job() -> AnalysisJob:
        with database.session() as session:
            return session.get(AnalysisJob, job_id)

    def wait_for(condition, seconds: float) -> AnalysisJob:
        deadline = time.monotonic() + seconds
        while not condition(found := job()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert condition(found), (found, log.read_text())
        return found

    log = tmp_path / "workers.log"
    # A sampler that would run for many minutes, were it not killed.
    endless = {"DRAWS": "200000", "TUNE": "1000", "CHAINS": "1"}
    first = start_worker(database_url, log, **sampler(endless))
    try:
        # Running, and past the worker's own first progress report (compiling the model, a
        # heartbeat after the claim's): killed in the middle of the work, not before it began.
        running = wait_for(lambda j: j.status == "running" and j.progress >= 0.1, 90)
    finally:
        kill_minus_nine(first)
    assert str(first.pid) in running.worker
    abandoned = job()
    assert abandoned.status == "running" and abandoned.finished_at is None

    quick = {"DRAWS": "100", "TUNE": "100", "CHAINS": "2", "STALE_SECONDS": "2"}
    second = start_worker(database_url, log, **sampler(quick))
    try:
        done = wait_for(lambda j: j.status in ("succeeded", "failed"), 120)
    finally:
        kill_minus_nine(second)
    assert done.status == "succeeded", done.error
    assert str(second.pid) in done.worker
    # Claimed again only once the killed worker's last heartbeat was 2 s old.
    assert (done.started_at - abandoned.heartbeat_at).total_seconds() >= 2
    answer = client.get(f"/v1/analyses/{job_id}", headers=keys["read"]).json
    assert answer["status"] == "succeeded" and answer["progress"] == 1.0
    assert answer["result"]["sampler"]["draws"] == 100  # the second worker's run
    assert answer["result"]["segments"][0]["segment"] == "all"


def sampler(settings: dict[str, str]) -> dict[str, str]:
    """KAIROS_ANALYSIS_* variables from {"DRAWS": …}."""
    return {f"KAIROS_ANALYSIS_{name}": value for name, value in settings.items()}
