"""Concurrency on PostgreSQL, as a scaled-out deployment runs: two app nodes (`kairos serve`,
2 gunicorn workers each) on one database, and several clients sending assignment batches over
overlapping units, single assignments, and outcome batches with resends, each request to
either node at random, while the bandit reweights on schedule every second. Each unit gets one
stored assignment and every answer for it names the same variant, whichever node gave it;
every acknowledged event is stored once and counted once, a resend is answered as a duplicate,
and the maintained statistics agree with a recount (`kairos stats check`). Then the same with
PostgreSQL crashed and restarted under the load: clients retry what was refused, and nothing
acknowledged is lost or counted twice."""

import random
import threading
import time
from collections import defaultdict

import pytest
import requests
from sqlalchemy import text

from experiments.keys import create_key
from experiments.storage import migrate
from experiments.storage.database import Database
from tests.conftest import create_postgres_database
from tests.pg import PostgresCluster
from tests.servers import kairos_nodes, run_kairos
from tests.utils.factories import experiment_body

pytestmark = pytest.mark.postgres

CLIENTS, ROUNDS, POOL, BATCH = 6, 20, 2_000, 40
KEY = "onboarding-nudge"


def prepared_database(server_url: str, name: str) -> tuple[str, str]:
    """A migrated database with durable commits (the test cluster runs without them, which a
    crash test cannot afford) and an admin key; its URL and the key's token."""
    url = create_postgres_database(server_url, name)
    database = Database(url)
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
    database.dispose()
    database = Database(url)
    migrate.upgrade(database)
    with database.session(write=True) as session:
        _, token = create_key(session=session, name="admin", scopes=["admin"])
    database.dispose()
    return url, token


class Clients:
    """CLIENTS threads, ROUNDS rounds each: an assignment batch of BATCH units drawn from a
    pool of POOL (so that clients ask for the same units at the same time), one single
    assignment, an outcome batch for half the units answered plus, every third round, a resend
    of the previous batch's first events. Each request goes to a node at random; a refused one
    (503, or no connection while a node or the database is down) is sent again, as a journey
    engine would. What was answered and acknowledged is recorded."""

    def __init__(self, bases: list[str], token: str):
        self.bases = bases
        self.headers = {"Authorization": f"Bearer {token}"}
        self.lock = threading.Lock()
        self.answers: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.sent: set[str] = set()
        self.acknowledged: set[str] = set()
        self.counts = {"events": 0, "accepted": 0, "duplicates": 0}
        self.refused = 0
        self.errors: list[str] = []

    def post(self, rng: random.Random, sessions, path: str, body: dict, expected: int):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            node = rng.randrange(len(self.bases))
            try:
                answer = sessions[node].post(
                    f"{self.bases[node]}{path}", json=body, headers=self.headers, timeout=30
                )
            except requests.RequestException:
                answer = None
            if answer is not None and answer.status_code == expected:
                return answer.json()
            if answer is not None and answer.status_code != 503:
                self.errors.append(f"{path}: {answer.status_code} {answer.text[:300]}")
                return None
            if answer is not None:
                assert set(answer.json()) == {"code", "status", "message", "errors"}
            with self.lock:
                self.refused += 1
            time.sleep(0.1)
        self.errors.append(f"{path}: no answer within 60 s")
        return None

    def record(self, assignments: list[dict]) -> None:
        with self.lock:
            for a in assignments:
                self.answers[a["unit_id"]].add((a["variant"], a["assignment_id"]))

    def client(self, n: int) -> None:
        rng = random.Random(n)
        sessions = [requests.Session() for _ in self.bases]
        previous: list[dict] = []
        for round_ in range(ROUNDS):
            units = [{"unit_id": f"u{u}"} for u in rng.sample(range(POOL), BATCH)]
            batch = self.post(
                rng, sessions, "/v1/assignments/batch", {"experiment": KEY, "units": units}, 200
            )
            if batch is None:
                return
            self.record(batch["assignments"])
            single = {"experiment": KEY, "unit_id": f"u{rng.randrange(POOL)}"}
            single = self.post(rng, sessions, "/v1/assignments", single, 200)
            if single is None:
                return
            self.record([single])
            events = {
                f"e-{a['unit_id']}": {
                    "event_id": f"e-{a['unit_id']}",  # the same event, whoever reports it
                    "assignment_id": a["assignment_id"],
                    "metric": "activated",
                }
                for a in batch["assignments"][::2]
            }
            if round_ % 3 == 2:
                events.update({e["event_id"]: e for e in previous})
            previous = list(events.values())[:10]
            with self.lock:
                self.sent.update(events)
            counts = self.post(
                rng, sessions, "/v1/outcomes/batch", {"events": list(events.values())}, 202
            )
            if counts is None:
                return
            assert counts["unattributed"] == 0, counts
            with self.lock:
                self.acknowledged.update(events)
                self.counts["events"] += len(events)
                self.counts["accepted"] += counts["accepted"]
                self.counts["duplicates"] += counts["duplicates"]

    def run(self, while_running=None) -> None:
        threads = [threading.Thread(target=self.client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        if while_running:
            while_running()
        for thread in threads:
            thread.join(timeout=180)
        assert not any(t.is_alive() for t in threads)
        assert not self.errors, self.errors[:5]


def start_experiment(base: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    body = experiment_body(
        allocation="thompson",
        bandit={"min_units_per_arm": 5, "update_every_seconds": 1},
        holdout=0.0,
    )
    created = requests.post(f"{base}/v1/experiments", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert requests.post(f"{base}/v1/experiments/{KEY}/start", headers=headers).ok


def stored(url: str) -> tuple[dict[str, list[tuple[str, str]]], list[str], int]:
    """Stored assignments by unit, stored event ids, and the experiment's current period."""
    database = Database(url)
    with database.engine.connect() as connection:
        assignments = defaultdict(list)
        for unit, variant, assignment_id in connection.execute(
            text("SELECT unit_id, variant, id FROM assignment")
        ):
            assignments[unit].append((variant, assignment_id))
        events = list(connection.execute(text("SELECT event_id FROM outcome")).scalars())
        period = connection.execute(
            text("SELECT current_period FROM experiment WHERE key = :key"), {"key": KEY}
        ).scalar_one()
    database.dispose()
    return assignments, events, period


def check_nothing_lost_or_doubled(url: str, clients: Clients, *, exact_counts: bool) -> int:
    assignments, events, period = stored(url)
    # One stored assignment per unit, and every answer, from either node, named it.
    assert all(len(rows) == 1 for rows in assignments.values())
    split = {u: a for u, a in clients.answers.items() if len(a) != 1}
    assert not split, list(split.items())[:5]
    answered = {u: next(iter(a)) for u, a in clients.answers.items()}
    assert answered == {u: rows[0] for u, rows in assignments.items()}
    # Every acknowledged event stored, once; nothing stored that was not sent.
    assert len(events) == len(set(events))
    assert clients.acknowledged <= set(events) <= clients.sent
    counts = clients.counts
    assert counts["accepted"] + counts["duplicates"] == counts["events"]
    if exact_counts:  # every batch was answered once: each event accepted once, else a duplicate
        assert counts["accepted"] == len(events)
    else:  # a batch committed as the database went down was refused, sent again: duplicates
        assert counts["accepted"] <= len(events)
    assert counts["duplicates"] > 0  # the resends (and the same units' events) were seen
    check = run_kairos(url, "stats", "check", KEY)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "statistics agree" in check.stdout
    return period


def test_two_app_nodes_keep_units_sticky_and_count_each_event_once(postgres_url, tmp_path):
    url, token = prepared_database(postgres_url, "kairos_concurrency")
    logs = [tmp_path / "node-a.log", tmp_path / "node-b.log"]
    with kairos_nodes(url, logs) as nodes:
        start_experiment(nodes[0].base, token)
        clients = Clients([n.base for n in nodes], token)
        started = time.monotonic()
        clients.run()
        seconds = time.monotonic() - started
    assert clients.refused == 0  # nothing refused while the database was up
    period = check_nothing_lost_or_doubled(url, clients, exact_counts=True)
    assert period > 1  # reweights, on schedule, happened under the load
    print(
        f"{CLIENTS} clients × {ROUNDS} rounds on 2 nodes in {seconds:.1f} s: "
        f"{len(clients.answers):,} units, {len(clients.acknowledged):,} events, "
        f"{clients.counts['duplicates']:,} duplicates, {period} periods"
    )


def test_a_postgresql_restart_under_load_loses_and_doubles_nothing(tmp_path):
    cluster = PostgresCluster()
    try:
        url, token = prepared_database(cluster.start(), "kairos_restart")
        logs = [tmp_path / "node-a.log", tmp_path / "node-b.log"]
        with kairos_nodes(url, logs) as nodes:
            start_experiment(nodes[0].base, token)
            clients = Clients([n.base for n in nodes], token)

            def crash_and_restart():
                time.sleep(1.5)
                cluster.halt()
                time.sleep(1.5)
                cluster.resume()

            clients.run(while_running=crash_and_restart)
            assert clients.refused > 0  # the load did meet the database down
            for node in nodes:  # both nodes answer again, without a restart
                assert requests.get(f"{node.base}/health", timeout=5).status_code == 200
        check_nothing_lost_or_doubled(url, clients, exact_counts=False)
        print(f"refused while PostgreSQL was down, then sent again: {clients.refused:,}")
    finally:
        cluster.stop()
