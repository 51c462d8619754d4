"""Faults: `kairos serve` (gunicorn, 2 workers) killed with SIGKILL, master and workers at once,
in the middle of mixed load (assignment batches, outcome batches with resends, reweights), then
started again on the same SQLite file. Every acknowledged assignment and event is there exactly
once, the maintained statistics agree with a recount of the raw rows, the database passes its
integrity check, and the restarted server answers."""

import sqlite3
import threading
import time
from contextlib import suppress

import pytest
import requests

from api import create_app
from experiments.keys import create_key
from experiments.storage import migrate
from experiments.storage.database import Database
from tests.conftest import create_postgres_database, get_database_of
from tests.pg import PostgresCluster
from tests.servers import kairos_serve, run_kairos
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
        app = create_app(
            {
                "TESTING": True,
                "KAIROS_DATABASE_URL": url,
                "SECRET_KEY": "x",
                "KAIROS_CACHE_SECONDS": 0,
            }
        )
        client, headers = app.test_client(), {"Authorization": f"Bearer {token}"}
        start(client, {"manage": headers}, experiment_body())
        units = [{"unit_id": f"u{i}"} for i in range(50)]
        before = assign_batch(client, headers, "onboarding-nudge", units)

        cluster.halt()
        for method, path, body in (
            ("POST", "/v1/assignments/batch", {"experiment": "onboarding-nudge", "units": units}),
            (
                "POST",
                "/v1/outcomes",
                {
                    "event_id": "e1",
                    "assignment_id": before[0]["assignment_id"],
                    "metric": "activated",
                },
            ),
            ("GET", "/v1/experiments/onboarding-nudge/results", None),
        ):
            answer = client.open(path, method=method, json=body, headers=headers)
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
    finally:
        cluster.stop()
