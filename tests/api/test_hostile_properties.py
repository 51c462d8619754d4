"""Generated hostile input (hypothesis): whatever JSON, text, number or date a client sends in
the fields it controls, the answer is a success or a 4xx in the error shape, never a 5xx, and
what was accepted reads back as it was sent, without breaking a later request."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.utils.factories import experiment_body

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)
# Nesting far beyond any bound, built directly (hypothesis would rarely reach it by itself).
deep_values = st.integers(min_value=1, max_value=400).map(
    lambda depth: json.loads("[" * depth + "]" * depth)
)
hostile_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=250
)
moments = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    hostile_text,
)


def post(client, path, body, headers):
    return client.post(
        path, data=json.dumps(body), headers={**headers, "Content-Type": "application/json"}
    )


def answered(response, *ok: int) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code not in ok:
        assert 400 <= response.status_code < 500
        assert set(response.json) == {"code", "status", "message", "errors"}


@pytest.fixture
def started(client, keys):
    body = experiment_body(holdout=0)
    assert post(client, "/v1/experiments", body, keys["manage"]).status_code == 201
    assert (
        client.post("/v1/experiments/onboarding-nudge/start", headers=keys["manage"]).status_code
        == 200
    )
    return "onboarding-nudge"


@SETTINGS
@given(payload=json_values | deep_values)
def test_any_payload_is_stored_as_sent_or_refused(client, keys, database, payload):
    body = experiment_body(key="generated")
    body["variants"][0]["payload"] = payload
    response = post(client, "/v1/experiments", body, keys["manage"])
    answered(response, 201)
    listed = client.get("/v1/experiments", headers=keys["read"])
    assert listed.status_code == 200, listed.get_data(as_text=True)
    if response.status_code == 201:
        stored = client.get("/v1/experiments/generated", headers=keys["read"]).json
        assert stored["variants"][0]["payload"] == payload
        with database.engine.begin() as connection:  # the next example reuses the key
            connection.execute(text("DELETE FROM experiment WHERE key = 'generated'"))


@SETTINGS
@given(
    unit_id=hostile_text, attributes=st.dictionaries(st.text(max_size=12), json_values, max_size=5)
)
def test_any_unit_is_assigned_as_sent_or_refused(client, keys, started, unit_id, attributes):
    unit = {"unit_id": unit_id, "attributes": attributes}
    one = post(client, "/v1/assignments", {"experiment": started, **unit}, keys["assign"])
    answered(one, 200)
    if one.status_code == 200:
        assert one.json["unit_id"] == unit_id
    batch = post(
        client, "/v1/assignments/batch", {"experiment": started, "units": [unit]}, keys["assign"]
    )
    answered(batch, 200)
    assert (one.status_code == 200) == (batch.status_code == 200)


@SETTINGS
@given(
    event_id=hostile_text,
    value=st.one_of(st.floats(), st.integers(), st.text(max_size=5)),
    occurred_at=moments,
)
def test_any_event_is_counted_or_refused(client, keys, started, event_id, value, occurred_at):
    event = {
        "event_id": event_id,
        "experiment": started,
        "unit_id": "u-1",
        "metric": "activated",
        "value": value,
        "occurred_at": occurred_at,
    }
    try:
        body = json.dumps({"events": [event]}, allow_nan=False)
    except ValueError:  # NaN and infinities are not JSON: no client can send them
        return
    response = client.post(
        "/v1/outcomes/batch",
        data=body,
        headers={**keys["assign"], "Content-Type": "application/json"},
    )
    answered(response, 202)
    results = client.get(f"/v1/experiments/{started}/results", headers=keys["read"])
    assert results.status_code == 200


@SETTINGS
@given(now=moments)
def test_any_simulated_clock_is_used_or_refused(client, keys, started, now):
    answered(
        post(
            client,
            "/v1/assignments",
            {"experiment": started, "unit_id": "u", "now": now},
            keys["admin"],
        ),
        200,
    )
    for name in ("since", "until"):
        answered(client.get("/v1/learnings", query_string={name: now}, headers=keys["read"]), 200)


@SETTINGS
@given(q=hostile_text, tag=hostile_text, page=st.integers(min_value=-5, max_value=2**70))
def test_any_registry_query_is_answered_or_refused(client, keys, q, tag, page):
    query = {"q": q, "tag": tag, "page": page}
    answered(client.get("/v1/learnings", query_string=query, headers=keys["read"]), 200)
