"""Every endpoint × {no key, invalid key, revoked key, wrong scope, right scope, admin}."""

import time

import pytest

from experiments.keys import create_key, revoke_keys
from tests.utils.factories import experiment_body, make_experiment

PUBLIC_ENDPOINTS = {
    "health.Health",
    "health.Liveness",
    "metrics.Metrics",
    "api-docs.openapi_json",
    "api-docs.openapi_swagger_ui",
    "docs_assets",
    "static",
}

# (method, path, body, scope it needs)
ENDPOINTS = [
    ("GET", "/v1/experiments", None, "read"),
    ("POST", "/v1/experiments", experiment_body(key="another"), "manage"),
    ("GET", "/v1/experiments/onboarding-nudge", None, "read"),
    ("POST", "/v1/experiments/onboarding-nudge/start", None, "manage"),
    ("POST", "/v1/experiments/onboarding-nudge/pause", None, "manage"),
    ("POST", "/v1/experiments/onboarding-nudge/reweight", {}, "manage"),
    ("POST", "/v1/experiments/onboarding-nudge/conclude", {}, "manage"),
    ("POST", "/v1/assignments", {"experiment": "onboarding-nudge", "unit_id": "u1"}, "assign"),
    (
        "POST",
        "/v1/assignments/batch",
        {"experiment": "onboarding-nudge", "units": [{"unit_id": "u1"}]},
        "assign",
    ),
    (
        "POST",
        "/v1/outcomes",
        {
            "event_id": "e1",
            "experiment": "onboarding-nudge",
            "unit_id": "u1",
            "metric": "activated",
        },
        "assign",
    ),
    (
        "POST",
        "/v1/outcomes/batch",
        {"events": [{"event_id": "e2", "assignment_id": "abc", "metric": "activated"}]},
        "assign",
    ),
    ("GET", "/v1/experiments/onboarding-nudge/results", None, "read"),
    ("POST", "/v1/experiments/onboarding-nudge/analyses", {"method": "hierarchical"}, "manage"),
    ("GET", "/v1/analyses/1", None, "read"),
    ("POST", "/v1/experiments/onboarding-nudge/learnings", {}, "manage"),
    ("POST", "/v1/learnings", {"summary": "Push works in the morning."}, "manage"),
    ("GET", "/v1/learnings", None, "read"),
    ("GET", "/v1/learnings/evidence?metric=a&factor=b&level=c", None, "read"),
    ("GET", "/v1/learnings/1", None, "read"),
]

# Scopes that do not grant the needed one ("manage" grants "read"; "admin" grants all).
WRONG_SCOPES = {"read": ["assign"], "manage": ["read", "assign"], "assign": ["read", "manage"]}

IDS = [f"{method} {path}" for method, path, _, _ in ENDPOINTS]


@pytest.fixture
def experiment(database):
    with database.session(write=True) as session:
        return make_experiment(session)


def call(client, method, path, body, headers=None):
    return client.open(path, method=method, json=body, headers=headers or {})


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=IDS)
def test_no_key_is_401(client, experiment, method, path, body, scope):
    response = call(client, method, path, body)
    assert response.status_code == 401
    assert response.json["code"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=IDS)
def test_invalid_key_is_401(client, experiment, method, path, body, scope):
    for header in ("Bearer kairos_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer ", "token"):
        response = call(client, method, path, body, {"Authorization": header})
        assert response.status_code == 401, header


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=IDS)
def test_wrong_scope_is_403(client, experiment, keys, method, path, body, scope):
    for wrong in WRONG_SCOPES[scope]:
        response = call(client, method, path, body, keys[wrong])
        assert response.status_code == 403, wrong
        assert f"'{scope}'" in response.json["message"]


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=IDS)
def test_right_scope_and_admin_are_allowed(client, experiment, keys, method, path, body, scope):
    for allowed in (scope, "admin"):
        response = call(client, method, path, body, keys[allowed])
        assert response.status_code not in (401, 403), (allowed, response.json)
    # The first allowed call of each endpoint succeeds outright (pause/conclude: after a start).


def test_wrong_scope_changes_nothing(client, keys):
    response = client.post("/v1/experiments", json=experiment_body(), headers=keys["read"])
    assert response.status_code == 403
    assert client.get("/v1/experiments", headers=keys["read"]).json == []


def test_revoked_key_is_401(client, database):
    with database.session(write=True) as session:
        _, token = create_key(session=session, name="temporary", scopes=["read"])
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/experiments", headers=headers).status_code == 200
    with database.session(write=True) as session:
        revoke_keys(session=session, name_or_id="temporary")
    response = client.get("/v1/experiments", headers=headers)
    assert response.status_code == 401
    assert "revoked" in response.json["message"]


def test_a_revoked_key_is_refused_on_every_node_within_the_cache_time(database, nodes):
    """Three nodes that remember a key for a second each (KAIROS_CACHE_SECONDS, as workers
    or hosts do): once the key is revoked, every node refuses it within that second."""
    with database.session(write=True) as session:
        _, token = create_key(session=session, name="leaving", scopes=["read"])
    headers = {"Authorization": f"Bearer {token}"}
    clients = [node.test_client() for node in nodes(3, cache_seconds=1.0)]
    assert all(c.get("/v1/experiments", headers=headers).status_code == 200 for c in clients)
    with database.session(write=True) as session:
        revoke_keys(session=session, name_or_id="leaving")
    revoked_at = time.monotonic()
    refused = set()
    while len(refused) < len(clients) and time.monotonic() - revoked_at < 5:
        for i, c in enumerate(clients):
            if c.get("/v1/experiments", headers=headers).status_code == 401:
                refused.add(i)
        time.sleep(0.05)
    assert len(refused) == len(clients)
    assert time.monotonic() - revoked_at < 1.0 + 1.0  # the cache time, and a loaded machine


def test_every_non_public_route_is_in_the_auth_matrix(app):
    covered = {(method, path.split("?")[0]) for method, path, _, _ in ENDPOINTS}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or rule.rule.startswith("/ui"):
            continue  # the pages sign in with a cookie: tests/pages checks every one of them
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            path = (
                rule.rule.replace("<key:key>", "onboarding-nudge")
                .replace("<id:job_id>", "1")
                .replace("<id:learning_id>", "1")
            )
            assert (method, path) in covered, f"{method} {rule.rule} is not in the auth matrix"
