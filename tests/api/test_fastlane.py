"""The fast lane answers ordinary single assignments exactly as the Flask view would, and hands
everything else to Flask, body included; on both databases."""

import random

import orjson
import pytest

from api import create_app
from api.fastlane import FAST_LANE
from experiments import lifecycle
from tests.utils.assignments import start
from tests.utils.factories import experiment_body

BODY = {
    "experiment": "onboarding-nudge",
    "unit_id": "user-1",
    "attributes": {"days_since_signup": 3},
    "timezone": "Europe/Paris",
}


@pytest.fixture
def flask_only(app, database_url):
    """A second app on the same database, without the fast lane."""
    other = create_app({**app.config, "KAIROS_FAST_LANE": False})
    yield other.test_client()
    with other.app_context():
        from api.db import get_database

        get_database().dispose()


def post(client, body, headers, **kwargs):
    return client.post("/v1/assignments", data=orjson.dumps(body), headers=headers, **kwargs)


def json_headers(headers):
    return {**headers, "Content-Type": "application/json"}


@pytest.mark.parametrize("holdout", [0.05, 0.5], ids=["few held out", "half held out"])
def test_the_lane_and_the_view_give_the_same_bytes(
    app, client, flask_only, keys, holdout, monkeypatch
):
    """The view dumps through AssignmentSchema; the lane serialises the answer directly."""
    rng = random.Random(20261129)  # hash seeds that hold some of the ten units out
    monkeypatch.setattr(lifecycle, "new_seed", lambda: rng.getrandbits(31))
    start(client, keys, experiment_body(holdout=holdout))
    lane = app.extensions[FAST_LANE]
    headers = json_headers(keys["assign"])
    held_out = set()
    for unit in (f"user-{n}" for n in range(1, 11)):
        body = {**BODY, "unit_id": unit}
        served = lane.served
        by_lane = post(client, body, headers)
        assert lane.served == served + 1
        by_view = post(flask_only, body, headers)  # the stored (sticky) answer, through Flask
        assert by_lane.status_code == by_view.status_code == 200
        assert by_lane.data == by_view.data
        assert by_lane.content_type == by_view.content_type == "application/json"
        held_out.add(by_lane.json["holdout"])
    if holdout == 0.5:
        assert held_out == {True, False}
    # And the other way round: first stored through Flask, then read through the lane.
    by_view = post(flask_only, {**BODY, "unit_id": "user-4"}, headers)
    assert post(client, {**BODY, "unit_id": "user-4"}, headers).data == by_view.data


@pytest.mark.parametrize(
    ("change", "scope", "code", "field"),
    [
        ({}, None, 401, None),
        ({}, "read", 403, None),
        ({"unknown": 1}, "assign", 422, "unknown"),
        ({"unit_id": ""}, "assign", 422, "unit_id"),
        ({"experiment": "Not A Slug"}, "assign", 422, "experiment"),
        ({"attributes": [1]}, "assign", 422, "attributes"),
        ({"timezone": "Mars/Olympus"}, "assign", 422, "timezone"),
        ({"experiment": "no-such-experiment"}, "assign", 404, None),
    ],
)
def test_anything_unusual_is_answered_by_flask_in_the_error_shape(
    app, client, keys, change, scope, code, field
):
    start(client, keys, experiment_body())
    lane = app.extensions[FAST_LANE]
    served = lane.served
    headers = json_headers(keys[scope]) if scope else {"Content-Type": "application/json"}
    response = post(client, {**BODY, **change}, headers)
    assert response.status_code == code, response.json
    assert set(response.json) == {"code", "status", "message", "errors"}
    if field:
        assert field in response.json["errors"] or field in response.json["message"]
    assert lane.served == served


def test_bodies_it_is_unsure_of_reach_flask_intact(app, client, keys):
    start(client, keys, experiment_body())
    lane = app.extensions[FAST_LANE]
    served = lane.served
    headers = keys["assign"]
    # Not declared as JSON: Flask decides (and says what it wants).
    response = client.post("/v1/assignments", data=orjson.dumps(BODY), headers=headers)
    assert response.status_code in (400, 415, 422)
    # Broken JSON.
    response = client.post(
        "/v1/assignments", data=b'{"experiment": ', headers=json_headers(headers)
    )
    assert response.status_code == 400
    assert response.json["code"] == 400
    assert lane.served == served


def test_an_admins_simulated_clock_is_honoured_through_flask(app, client, keys):
    start(client, keys, experiment_body())
    lane = app.extensions[FAST_LANE]
    served = lane.served
    body = {**BODY, "now": "2030-01-01T12:00:00Z"}
    response = post(client, body, json_headers(keys["admin"]))
    assert response.status_code == 200
    assert response.json["send_at"] is None or response.json["send_at"] >= "2030-01-01"
    assert lane.served == served


def test_a_paused_experiment_is_refused_and_nothing_is_stored(app, client, keys):
    start(client, keys, experiment_body())
    assert (
        client.post("/v1/experiments/onboarding-nudge/pause", headers=keys["manage"]).status_code
        == 200
    )
    lane = app.extensions[FAST_LANE]
    served = lane.served
    response = post(client, BODY, json_headers(keys["assign"]))
    assert response.status_code == 409
    assert response.json["code"] == 409
    assert lane.served == served
