"""The embedded SQLite database has one write lock: nothing long runs while holding it, and a
request that cannot get it in time is a 503 the client may retry, in the error shape."""

import sqlite3
import threading
import time

import pytest

from experiments.allocation import reweight as reweight_module
from experiments.storage import database as db_module
from tests.utils.assignments import assign_batch, start
from tests.utils.factories import FACTORIAL, experiment_body


@pytest.fixture
def sqlite_app(app, backend):
    if backend != "sqlite":
        pytest.skip("the single write lock is SQLite's")
    return app


def test_a_request_that_cannot_get_the_write_lock_is_a_503_it_may_retry(
    sqlite_app, keys, database_url, monkeypatch
):
    client = sqlite_app.test_client()
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 300)
    from api import create_app

    impatient = create_app({"KAIROS_DATABASE_URL": database_url, "SECRET_KEY": "s"})
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = impatient.test_client().post(
            "/v1/experiments", json=experiment_body(), headers=keys["manage"]
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503, response.get_data(as_text=True)
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert response.headers["Retry-After"] == "1"
    retried = client.post("/v1/experiments", json=experiment_body(), headers=keys["manage"])
    assert retried.status_code == 201


def test_no_writer_waits_while_a_reweight_computes_its_weights(
    sqlite_app, keys, nodes, monkeypatch
):
    """A large experiment's weights take seconds (256 variants × 100 segments took two
    minutes); they are computed from a read snapshot, not inside the write transaction."""
    client = sqlite_app.test_client()
    start(client, keys, experiment_body(FACTORIAL, bandit={"min_units_per_arm": 1}))
    assign_batch(
        client, keys["assign"], "renewal-reminder", [{"unit_id": f"u{i}"} for i in range(200)]
    )
    computing, release = threading.Event(), threading.Event()
    compute = reweight_module.compute_weights

    def slow_compute(**kwargs):
        computing.set()
        release.wait(30)
        return compute(**kwargs)

    monkeypatch.setattr(reweight_module, "compute_weights", slow_compute)
    answers = {}

    def reweight():
        answers["reweight"] = client.post(
            "/v1/experiments/renewal-reminder/reweight", json={}, headers=keys["manage"]
        )

    thread = threading.Thread(target=reweight)
    thread.start()
    try:
        assert computing.wait(10)
        (other,) = nodes(1)
        began = time.monotonic()
        response = other.test_client().post(
            "/v1/experiments", json=experiment_body(), headers=keys["manage"]
        )
        waited = time.monotonic() - began
    finally:
        release.set()
        thread.join(30)
    assert response.status_code == 201
    assert waited < 5, f"a writer waited {waited:.1f} s for the reweight"
    assert answers["reweight"].status_code == 200, answers["reweight"].json
    assert answers["reweight"].json["period"] == 2
