"""/v1/experiments: creation as stored, listing, reading, and the lifecycle transitions."""

import pytest
from sqlmodel import select

from experiments.storage.tables import AllocationPeriod
from tests.utils.factories import FACTORIAL, experiment_body


def create(client, keys, body=None):
    response = client.post(
        "/v1/experiments", json=body or experiment_body(), headers=keys["manage"]
    )
    assert response.status_code == 201, response.json
    return response.json


def test_create_returns_the_experiment_as_stored(client, keys):
    created = create(client, keys)
    assert created["status"] == "draft"
    assert created["key"] == "onboarding-nudge"
    assert created["control"] == "morning-push"
    assert [v["key"] for v in created["variants"]] == ["morning-push", "evening-email"]
    assert created["variants"][0] == {
        "key": "morning-push",
        "factors": {"timing": "morning", "channel": "push"},
        "payload": {"template": "nudge_a", "send": {"local_hour": 9}},
        "weight": 0.5,
    }
    assert created["factors"] == {"timing": ["morning", "evening"], "channel": ["push", "email"]}
    assert created["segments"] == [
        {"key": "newcomers", "rule": {"attribute": "days_since_signup", "op": "lt", "value": 14}}
    ]
    assert [m["key"] for m in created["metrics"]] == ["activated", "unsubscribed", "suppressed"]
    assert created["metrics"][1]["higher_is_better"] is False
    assert created["quiet_hours"] == {"start": 21, "end": 8}
    assert created["holdout"] == 0.05
    assert created["bandit"] is None
    assert created["period"] == 0
    fetched = client.get("/v1/experiments/onboarding-nudge", headers=keys["read"]).json
    assert fetched == created


def test_factors_alone_generate_the_full_factorial_in_order(client, keys):
    created = create(client, keys, experiment_body(FACTORIAL))
    keys_ = [v["key"] for v in created["variants"]]
    assert len(keys_) == 8
    assert keys_[0] == "timing=morning,tone=friendly,channel=email"
    assert keys_[-1] == "timing=evening,tone=urgent,channel=push"
    assert created["variants"][1]["factors"] == {
        "timing": "morning",
        "tone": "friendly",
        "channel": "push",
    }
    assert all(v["weight"] == pytest.approx(1 / 8) for v in created["variants"])
    assert created["bandit"] == {
        "update_every_seconds": 900,
        "min_weight": 0.01,
        "min_units_per_arm": 100,
    }


def test_weights_default_to_an_equal_split(client, keys):
    body = experiment_body()
    for variant in body["variants"]:
        del variant["weight"]
    created = create(client, keys, body)
    assert [v["weight"] for v in created["variants"]] == [0.5, 0.5]


def test_duplicate_key_is_409_and_changes_nothing(client, keys):
    create(client, keys)
    response = client.post(
        "/v1/experiments", json=experiment_body(name="Other"), headers=keys["manage"]
    )
    assert response.status_code == 409
    assert "already exists" in response.json["message"]
    listed = client.get("/v1/experiments", headers=keys["read"]).json
    assert [e["name"] for e in listed] == ["Onboarding nudge"]


def test_unknown_experiment_is_404(client, keys):
    response = client.get("/v1/experiments/nope", headers=keys["read"])
    assert response.status_code == 404
    assert response.json["message"] == "No experiment with key 'nope'."
    for action in ("start", "pause", "conclude"):
        assert (
            client.post(f"/v1/experiments/nope/{action}", headers=keys["manage"]).status_code == 404
        )


def test_list_filters_by_status_and_paginates(client, keys):
    for index in range(5):
        create(client, keys, experiment_body(key=f"exp-{index}"))
    client.post("/v1/experiments/exp-1/start", headers=keys["manage"])
    client.post("/v1/experiments/exp-3/start", headers=keys["manage"])
    running = client.get("/v1/experiments?status=running", headers=keys["read"]).json
    assert sorted(e["key"] for e in running) == ["exp-1", "exp-3"]
    page = client.get("/v1/experiments?page=2&page_size=2", headers=keys["read"])
    assert [e["key"] for e in page.json] == ["exp-2", "exp-1"]
    assert '"total": 5' in page.headers["X-Pagination"]
    bad = client.get("/v1/experiments?status=finished", headers=keys["read"])
    assert bad.status_code == 422
    assert "status" in bad.json["errors"]


# (status reached by these actions first, action, expected code)
TRANSITIONS = [
    ([], "start", 200),
    ([], "pause", 409),
    ([], "conclude", 409),
    (["start"], "start", 409),
    (["start"], "pause", 200),
    (["start"], "conclude", 200),
    (["start", "pause"], "start", 200),
    (["start", "pause"], "pause", 409),
    (["start", "pause"], "conclude", 200),
    (["start", "conclude"], "start", 409),
    (["start", "conclude"], "pause", 409),
    (["start", "conclude"], "conclude", 409),
]


@pytest.mark.parametrize(("before", "action", "expected"), TRANSITIONS)
def test_lifecycle_allows_only_its_transitions(client, keys, before, action, expected):
    create(client, keys)
    for step in before:
        assert (
            client.post(
                f"/v1/experiments/onboarding-nudge/{step}", headers=keys["manage"]
            ).status_code
            == 200
        )
    status_before = client.get("/v1/experiments/onboarding-nudge", headers=keys["read"]).json
    response = client.post(f"/v1/experiments/onboarding-nudge/{action}", headers=keys["manage"])
    assert response.status_code == expected, response.json
    if expected == 409:
        assert status_before["status"] in response.json["message"]
        after = client.get("/v1/experiments/onboarding-nudge", headers=keys["read"]).json
        assert after == status_before


def test_first_start_opens_period_one_with_the_declared_split(client, keys, database):
    create(client, keys)
    started = client.post("/v1/experiments/onboarding-nudge/start", headers=keys["manage"]).json
    assert started["status"] == "running"
    assert started["period"] == 1
    assert started["started_at"] is not None
    client.post("/v1/experiments/onboarding-nudge/pause", headers=keys["manage"])
    resumed = client.post("/v1/experiments/onboarding-nudge/start", headers=keys["manage"]).json
    assert resumed["period"] == 1
    assert resumed["started_at"] == started["started_at"]
    with database.session() as session:
        periods = list(session.exec(select(AllocationPeriod)))
    assert len(periods) == 1
    assert periods[0].weights == {
        "newcomers": {"morning-push": 0.5, "evening-email": 0.5},
        "other": {"morning-push": 0.5, "evening-email": 0.5},
    }


def test_conclude_declares_the_winner(client, keys):
    create(client, keys)
    client.post("/v1/experiments/onboarding-nudge/start", headers=keys["manage"])
    response = client.post(
        "/v1/experiments/onboarding-nudge/conclude",
        json={"winner": "evening-email"},
        headers=keys["manage"],
    )
    assert response.status_code == 200
    assert response.json["status"] == "concluded"
    assert response.json["winner"] == "evening-email"
    assert response.json["concluded_at"] is not None


def test_conclude_without_winner_keeps_the_control(client, keys):
    create(client, keys)
    client.post("/v1/experiments/onboarding-nudge/start", headers=keys["manage"])
    response = client.post("/v1/experiments/onboarding-nudge/conclude", headers=keys["manage"])
    assert response.status_code == 200
    assert response.json["winner"] == "morning-push"


def test_conclude_with_unknown_winner_is_422_and_changes_nothing(client, keys):
    create(client, keys)
    client.post("/v1/experiments/onboarding-nudge/start", headers=keys["manage"])
    response = client.post(
        "/v1/experiments/onboarding-nudge/conclude", json={"winner": "nope"}, headers=keys["manage"]
    )
    assert response.status_code == 422
    assert response.json["errors"] == {"winner": ["'nope' is not one of the variants."]}
    after = client.get("/v1/experiments/onboarding-nudge", headers=keys["read"]).json
    assert after["status"] == "running"
