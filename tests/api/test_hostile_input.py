"""Hostile input, class by class: nothing a client sends is stored unless it can be read back,
every refusal is a 4xx in the one error shape, and nothing refused changes anything.

The classes (issue 12): free-form JSON depth and size, magnitudes, calendar edges, integer
range, trailing newlines in keys, control and bidi characters in identifiers, content types.
Each is tested over every field of the class, on SQLite and PostgreSQL.
"""

import json

import pytest
from sqlalchemy import func, select, text
from sqlmodel import SQLModel

from api.cli import main
from experiments.storage.tables import Experiment
from tests.utils.factories import FACTORIAL, experiment_body

KEY = "onboarding-nudge"
ERROR_SHAPE = {"code", "status", "message", "errors"}

# Characters that no identifier may hold: NUL, newline, escape, DEL, a C1 control, the
# bidirectional overrides and marks, a line separator, a zero-width space, a BOM.
FORBIDDEN_IN_IDENTIFIERS = [
    "\x00",
    "\n",
    "\x1b",
    "\x7f",
    "\x85",
    "\u202e",
    "\u200f",
    "\u2066",
    "\u2028",
    "\u200b",
    "\ufeff",
]
# Control characters no free text may hold (tab and newline may).
FORBIDDEN_IN_TEXT = ["\x00", "\x1b", "\x07", "\x7f", "\x9b"]
# Dates outside 2000-01-01 … 2100-01-01, or that overflow when moved to UTC, or not dates.
BAD_MOMENTS = [
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "1999-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "yesterday",
    "",
    "2026-01-01T00:00:00" + "0" * 100,
]


def nested(depth: int, leaf=1) -> dict:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def snapshot(database) -> dict:
    """Rows per table, and every experiment's state: what "nothing changed" compares."""
    with database.engine.connect() as connection:
        counts = {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }
        states = connection.execute(
            select(
                Experiment.key,
                Experiment.status,
                Experiment.current_period,
                Experiment.updated_at,
            ).order_by(Experiment.key)
        ).all()
    return {"rows": counts, "experiments": [tuple(row) for row in states]}


def refused(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.is_json
    assert set(response.json) == ERROR_SHAPE
    assert response.json["code"] == status
    if field is not None:
        assert field in response.json["errors"], response.json
    return response.json


@pytest.fixture
def running(client, keys):
    for body in (experiment_body(holdout=0), experiment_body(FACTORIAL)):
        assert client.post("/v1/experiments", json=body, headers=keys["manage"]).status_code == 201
        start = client.post(f"/v1/experiments/{body['key']}/start", headers=keys["manage"])
        assert start.status_code == 200
    return KEY


def post(client, path, body, headers):
    """POST `body` encoded by the standard library, which writes what orjson refuses to (300
    levels, integers beyond 64 bits), as a hostile client would."""
    data = json.dumps(body)
    return client.post(path, data=data, headers={**headers, "Content-Type": "application/json"})


def create(client, keys, body):
    return post(client, "/v1/experiments", body, keys["manage"])


def assign(client, headers, **body):
    return post(client, "/v1/assignments", {"experiment": KEY, **body}, headers)


def assign_batch(client, headers, units, **body):
    return post(
        client, "/v1/assignments/batch", {"experiment": KEY, "units": units, **body}, headers
    )


def report(client, keys, *events):
    return post(client, "/v1/outcomes/batch", {"events": list(events)}, keys["assign"])


def event(event_id="e-1", unit_id="u-1", metric="activated", **extra):
    return {"event_id": event_id, "experiment": KEY, "unit_id": unit_id, "metric": metric, **extra}


def everything_still_answers(client, keys):
    """What a stored bad value used to break, for everyone, after the request that stored it."""
    listed = client.get("/v1/experiments", headers=keys["read"])
    assert listed.status_code == 200, listed.get_data(as_text=True)
    for experiment in listed.json:
        one = client.get(f"/v1/experiments/{experiment['key']}", headers=keys["read"])
        assert one.status_code == 200
        results = client.get(f"/v1/experiments/{experiment['key']}/results", headers=keys["read"])
        assert results.status_code == 200, results.get_data(as_text=True)


# -- free-form JSON: depth, size, characters -------------------------------------------------


def variant_payload(payload):
    def mutate(body):
        body["variants"][0]["payload"] = payload

    return mutate, "variants.0.payload"


def rule_value(value, op="eq"):
    def mutate(body):
        body["segments"][0]["rule"].update(op=op, value=value)

    return mutate, "segments.0.rule.value"


BAD_EXPERIMENT_JSON = {
    "payload 17 deep": variant_payload(nested(17)),
    "payload 300 deep": variant_payload(nested(300)),
    "payload of 20 KB": variant_payload({"body": "x" * 20_000}),
    "payload with NUL": variant_payload({"template": "a\x00b"}),
    "payload key with a newline": variant_payload({"tem\nplate": "a"}),
    "payload integer beyond 2^53": variant_payload({"n": 2**60}),
    "payload integer beyond 64 bits": variant_payload({"n": 2**70}),
    "payload float beyond 2^53": variant_payload({"v": 1e20}),
    "rule value float beyond 2^53": rule_value(1e300, op="gt"),
    "payload send not an object": variant_payload({"send": "now"}),
    "payload send hour 24": variant_payload({"send": {"local_hour": 24}}),
    "payload send hour fractional": variant_payload({"send": {"local_hour": 9.5}}),
    "payload send minute 60": variant_payload({"send": {"local_hour": 9, "local_minute": 60}}),
    "payload send delay huge": variant_payload({"send": {"delay_minutes": 1e18}}),
    "payload send delay negative": variant_payload({"send": {"delay_minutes": -5}}),
    "payload send both": variant_payload({"send": {"delay_minutes": 5, "local_hour": 9}}),
    "payload send unknown": variant_payload({"send": {"at": "9am"}}),
    "rule value deep list": rule_value([nested(20)], op="in"),
    "rule value list of 1001": rule_value(list(range(1001)), op="in"),
    "rule value string with NUL": rule_value("a\x00"),
    "rule value string of 20 KB": rule_value("x" * 20_000),
    "generated variant keys over 200 characters": (
        lambda body: (
            body.pop("variants"),
            body.pop("control"),
            body.update(factors={"a" * 64: ["b" * 64, "c" * 64], "d" * 64: ["e" * 64, "f" * 64]}),
        ),
        "factors",
    ),
}


@pytest.mark.parametrize("case", BAD_EXPERIMENT_JSON.values(), ids=BAD_EXPERIMENT_JSON.keys())
def test_unbounded_free_form_json_in_an_experiment_is_refused_and_nothing_is_stored(
    client, keys, database, case
):
    mutate, field = case
    body = experiment_body()
    mutate(body)
    before = snapshot(database)
    response = create(client, keys, body)
    errors = refused(response, 422)["errors"]
    assert any(path.startswith(field) for path in errors), errors
    assert snapshot(database) == before
    everything_still_answers(client, keys)


def test_a_payload_at_the_bounds_is_stored_and_read_back(client, keys):
    payload = {"deep": nested(15, "leaf"), "text": "line one\n\tline two — ünïcode ✓"}
    body = experiment_body()
    body["variants"][0]["payload"] = payload
    response = create(client, keys, body)
    assert response.status_code == 201, response.json
    assert (
        client.get(f"/v1/experiments/{KEY}", headers=keys["read"]).json["variants"][0]["payload"]
        == payload
    )
    everything_still_answers(client, keys)


BAD_ATTRIBUTES = {
    "17 deep": nested(17),
    "300 deep": nested(300),
    "5 KB": {"bio": "x" * 5_000},
    "NUL in a value": {"plan": "pro\x00"},
    "control character in a key": {"pl\x1ban": "pro"},
    "integer beyond 2^53": {"days_since_signup": 2**62},
}


@pytest.mark.parametrize("attributes", BAD_ATTRIBUTES.values(), ids=BAD_ATTRIBUTES.keys())
def test_unbounded_attributes_are_refused_one_unit_or_a_batch(
    client, keys, database, running, attributes
):
    before = snapshot(database)
    refused(assign(client, keys["assign"], unit_id="u-1", attributes=attributes), 422, "attributes")
    units = [{"unit_id": "u-1"}, {"unit_id": "u-2", "attributes": attributes}]
    refused(assign_batch(client, keys["assign"], units), 422, "units.1.attributes")
    assert snapshot(database) == before


# -- magnitudes --------------------------------------------------------------------------------


@pytest.fixture
def with_revenue(client, keys):
    metrics = [*experiment_body()["metrics"], {"key": "revenue", "type": "continuous"}]
    body = experiment_body(key="shop", holdout=0, metrics=metrics)
    assert create(client, keys, body).status_code == 201
    assert client.post("/v1/experiments/shop/start", headers=keys["manage"]).status_code == 200
    return "shop"


@pytest.mark.parametrize("value", [1e308, -1e308, 1.0000001e9, -2e9, 10**30, True, "12"])
def test_outcome_values_beyond_a_billion_are_refused_and_later_events_still_count(
    client, keys, database, with_revenue, value, runner
):
    answer = client.post(
        "/v1/assignments",
        json={"experiment": "shop", "unit_id": "buyer"},
        headers=keys["assign"],
    )
    assert answer.status_code == 200
    sale = {"experiment": "shop", "unit_id": "buyer", "metric": "revenue"}
    before = snapshot(database)
    refused(
        report(client, keys, {**sale, "event_id": "huge", "value": value}), 422, "events.0.value"
    )
    refused(
        post(client, "/v1/outcomes", {**sale, "event_id": "huge", "value": value}, keys["assign"]),
        422,
        "value",
    )
    assert snapshot(database) == before
    for number, amount in enumerate((1e9, -1e9, 12.5)):
        response = report(client, keys, {**sale, "event_id": f"ok-{number}", "value": amount})
        assert response.status_code == 202, response.json
    assert runner.invoke(main, ["stats", "check", "shop"]).exit_code == 0
    everything_still_answers(client, keys)


def test_stats_check_catches_non_finite_statistics(client, keys, database, with_revenue, runner):
    client.post(
        "/v1/assignments", json={"experiment": "shop", "unit_id": "b"}, headers=keys["assign"]
    )
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE arm_stats SET sum_squares = :inf WHERE metric = 'revenue'"),
            {"inf": float("inf")},
        )
    checked = runner.invoke(main, ["stats", "check", "shop"])
    assert checked.exit_code == 1
    assert "not finite" in checked.output


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("margin", 1e10),
        ("threshold_of_caring", 1e13),
        ("prior_units", 1e7),
        ("holdout", 1e308),
        ("attribution_window_hours", 1e308),
    ],
)
def test_experiment_numbers_out_of_range_are_refused(client, keys, database, field, value):
    body = experiment_body()
    if field == "margin":
        body["metrics"][1]["margin"] = value
        field = "metrics.1.margin"
    else:
        body[field] = value
    refused(create(client, keys, body), 422, field)
    assert snapshot(database)["rows"]["experiment"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("holdout", "0.05"),
        ("holdout", True),
        ("attribution_window_hours", "72"),
        ("threshold_of_caring", [0.001]),
        ("quiet_hours", {"start": "21", "end": 8}),
        ("quiet_hours", {"start": 21.5, "end": 8}),
        ("bandit", {"min_units_per_arm": 2.7}),
    ],
)
def test_a_number_of_the_wrong_type_is_refused_not_converted(client, keys, database, field, value):
    body = experiment_body(allocation="thompson") if field == "bandit" else experiment_body()
    body[field] = value
    errors = refused(create(client, keys, body), 422)["errors"]
    assert any(path.startswith(field) for path in errors), errors
    assert snapshot(database)["rows"]["experiment"] == 0


# -- calendar edges ----------------------------------------------------------------------------


@pytest.mark.parametrize("moment", BAD_MOMENTS)
def test_dates_off_the_calendar_are_refused_wherever_they_are_given(
    client, keys, database, running, moment
):
    before = snapshot(database)
    admin, assigner, reader = keys["admin"], keys["assign"], keys["read"]
    refused(assign(client, admin, unit_id="u", now=moment), 422, "now")
    refused(assign(client, assigner, unit_id="u", now=moment), 422, "now")
    refused(assign_batch(client, admin, [{"unit_id": "u"}], now=moment), 422, "now")
    refused(
        client.post(
            "/v1/experiments/renewal-reminder/reweight", json={"now": moment}, headers=admin
        ),
        422,
        "now",
    )
    refused(report(client, keys, event(occurred_at=moment)), 422, "events.0.occurred_at")
    refused(
        client.post("/v1/outcomes", json=event(occurred_at=moment), headers=assigner),
        422,
        "occurred_at",
    )
    for name in ("since", "until"):
        response = client.get("/v1/learnings", query_string={name: moment}, headers=reader)
        refused(response, 422, name)
    assert snapshot(database) == before


def test_a_reweight_in_year_one_opens_no_period(client, keys, database, running):
    before = snapshot(database)
    response = client.post(
        "/v1/experiments/renewal-reminder/reweight",
        json={"now": "0001-01-01T00:00:00Z"},
        headers=keys["admin"],
    )
    refused(response, 422, "now")
    assert snapshot(database) == before


# -- integers beyond 64 bits -------------------------------------------------------------------


@pytest.mark.parametrize("number", [2**31, 2**63 - 2, 2**63, 2**64, 10**30, 0, -1])
def test_ids_beyond_their_column_are_not_found(client, keys, number):
    for path in (f"/v1/learnings/{number}", f"/v1/analyses/{number}"):
        refused(client.get(path, headers=keys["read"]), 404)


@pytest.mark.parametrize("page", [2**63, 2**64, 10**30])
def test_a_page_beyond_every_row_is_empty(client, keys, running, page):
    for path in ("/v1/experiments", "/v1/learnings"):
        response = client.get(path, query_string={"page": page}, headers=keys["read"])
        assert response.status_code == 200, response.json
        assert response.json == []


@pytest.mark.parametrize("units", [2**31, 2**63, 2.5, "12"])
def test_a_hand_written_learning_counts_units_in_its_column_s_range(client, keys, database, units):
    body = {"summary": "Interviews.", "units": units}
    refused(client.post("/v1/learnings", json=body, headers=keys["manage"]), 422, "units")
    assert snapshot(database)["rows"]["learning"] == 0


# -- keys: a trailing newline is not part of a slug --------------------------------------------


def variant_key(key):
    def mutate(body):
        body["variants"][0]["key"] = key
        body["control"] = key

    return mutate, "variants.0.key"


def top_field(name, value):
    def mutate(body):
        body[name] = value

    return mutate, name


def segment_key(key):
    def mutate(body):
        body["segments"][0]["key"] = key

    return mutate, "segments.0.key"


def metric_key(key):
    def mutate(body):
        body["metrics"][0]["key"] = key

    return mutate, "metrics.0.key"


def factor_level(level):
    def mutate(body):
        body.pop("variants")
        body.pop("control")
        body["factors"] = {"timing": ["morning", level]}

    return mutate, "factors"


@pytest.mark.parametrize("ending", ["\n", "\r\n", " ", "\x00"], ids=["LF", "CRLF", "space", "NUL"])
@pytest.mark.parametrize(
    "case",
    [variant_key, segment_key, metric_key, factor_level, lambda k: top_field("key", k)],
    ids=["variant key", "segment key", "metric key", "factor level", "experiment key"],
)
def test_keys_with_a_trailing_newline_are_refused(client, keys, database, case, ending):
    mutate, field = case("fz-nl" + ending)
    body = experiment_body()
    mutate(body)
    errors = refused(create(client, keys, body), 422)["errors"]
    assert any(path.startswith(field) for path in errors), errors
    assert snapshot(database)["rows"]["experiment"] == 0


def test_keys_with_a_trailing_newline_are_refused_in_requests_too(client, keys, running):
    refused(assign(client, keys["assign"], unit_id="u", experiment=KEY + "\n"), 422, "experiment")
    refused(report(client, keys, event(metric="activated\n")), 422, "events.0.metric")
    refused(report(client, keys, event(experiment=KEY + "\n")), 422, "events.0.experiment")
    conclude = client.post(
        f"/v1/experiments/{KEY}/conclude", json={"winner": "morning-push\n"}, headers=keys["manage"]
    )
    refused(conclude, 422, "winner")
    results = client.get(
        f"/v1/experiments/{KEY}/results",
        query_string={"metric": "activated\n"},
        headers=keys["read"],
    )
    refused(results, 422, "metric")
    for path in (f"/v1/experiments/{KEY}%0A", f"/v1/experiments/{KEY}%00/results"):
        refused(client.get(path, headers=keys["read"]), 404)


# -- identifiers: printable characters only ----------------------------------------------------


@pytest.mark.parametrize(
    "char", FORBIDDEN_IN_IDENTIFIERS, ids=[repr(c) for c in FORBIDDEN_IN_IDENTIFIERS]
)
def test_identifiers_with_control_or_bidi_characters_are_refused_everywhere(
    client, keys, database, running, char
):
    before = snapshot(database)
    bad = f"user{char}42"
    refused(assign(client, keys["assign"], unit_id=bad), 422, "unit_id")
    refused(assign_batch(client, keys["assign"], [{"unit_id": bad}]), 422, "units.0.unit_id")
    refused(
        assign(client, keys["assign"], unit_id="u", attributes={f"plan{char}": "pro"}),
        422,
        "attributes",
    )
    refused(report(client, keys, event(event_id=bad)), 422, "events.0.event_id")
    refused(report(client, keys, event(unit_id=bad)), 422, "events.0.unit_id")
    refused(
        report(client, keys, {"event_id": "e", "assignment_id": bad, "metric": "activated"}),
        422,
        "events.0.assignment_id",
    )
    learning = {"summary": "Push works.", "tags": [f"q1{char}"], "segment": bad}
    errors = refused(client.post("/v1/learnings", json=learning, headers=keys["manage"]), 422)
    assert {"tags.0", "segment"} <= set(errors["errors"])
    publish = client.post(
        f"/v1/experiments/{KEY}/learnings", json={"tags": [bad]}, headers=keys["manage"]
    )
    refused(publish, 422, "tags.0")
    for name in ("segment", "tag", "q", "level"):
        response = client.get("/v1/learnings", query_string={name: bad}, headers=keys["read"])
        refused(response, 422)
    assert snapshot(database) == before


@pytest.mark.parametrize("char", FORBIDDEN_IN_TEXT, ids=[repr(c) for c in FORBIDDEN_IN_TEXT])
def test_free_text_with_control_characters_is_refused(client, keys, database, char):
    for field in ("name", "hypothesis"):
        refused(create(client, keys, experiment_body(**{field: f"Nudge{char}"})), 422, field)
    for field in ("summary", "notes", "hypothesis"):
        learning = {"summary": "Push works.", field: f"Seen{char} twice."}
        refused(client.post("/v1/learnings", json=learning, headers=keys["manage"]), 422, field)
    assert snapshot(database)["rows"]["experiment"] == 0
    assert snapshot(database)["rows"]["learning"] == 0


def test_free_text_keeps_tabs_newlines_and_any_script(client, keys):
    summary = "Push works.\n\tMorning: مرحبا — 早上好 — ✓"
    response = client.post("/v1/learnings", json={"summary": summary}, headers=keys["manage"])
    assert response.status_code == 201, response.json
    assert response.json["summary"] == summary


# -- content types -----------------------------------------------------------------------------


def post_routes(app) -> list[str]:
    """The API's POST routes (the pages under /ui take HTML forms, tested in tests/pages)."""
    paths = []
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods and not rule.rule.startswith("/ui/"):
            paths.append(rule.rule.replace("<key:key>", KEY).replace("<id:job_id>", "1"))
    return sorted(paths)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", '{"now": "2030-01-01T00:00:00Z"}'),
        ("application/x-www-form-urlencoded", "tags=a&winner=b"),
        (None, "{}"),
        ("multipart/form-data; boundary=x", "--x--"),
        ("application/jsonx", '{"experiment": "onboarding-nudge", "unit_id": "u"}'),
        ("application/json-seq", '{"experiment": "onboarding-nudge", "unit_id": "u"}'),
    ],
    ids=["text/plain", "form", "no content type", "multipart", "jsonx", "json-seq"],
)
def test_a_body_that_is_not_json_is_415_on_every_route_and_changes_nothing(
    app, client, keys, database, running, content_type, body
):
    before = snapshot(database)
    headers = {**keys["admin"]}
    if content_type:
        headers["Content-Type"] = content_type
    for path in post_routes(app):
        refused(client.post(path, data=body, headers=headers), 415)
    assert snapshot(database) == before


def test_no_body_is_no_fields_on_every_route(app, client, keys, database, running):
    """An empty body (with or without a JSON content type) gives no fields: a route with
    required ones names them (422); a route without any acts on {} (start, pause, publish…)."""
    needs_fields = {
        "/v1/experiments",
        "/v1/assignments",
        "/v1/assignments/batch",
        "/v1/outcomes",
        "/v1/outcomes/batch",
        "/v1/learnings",
        f"/v1/experiments/{KEY}/analyses",
    }
    for path in sorted(needs_fields):
        before = snapshot(database)
        for headers in (keys["admin"], {**keys["admin"], "Content-Type": "application/json"}):
            errors = refused(client.post(path, data=b"", headers=headers), 422)["errors"]
            assert errors, path
        assert snapshot(database) == before
    assert set(post_routes(app)) > needs_fields


def test_a_path_that_names_nothing_is_a_json_404(client, keys):
    for path in (
        "/v1//experiments",
        f"/v1/experiments//{KEY}",
        f"/v1/experiments/{KEY}//results",
        "/v1/experiments/",
        "/v1/experiments/%2F",
        "/v1/nothing",
    ):
        refused(client.get(path, headers=keys["read"]), 404)


def test_malformed_json_is_400_and_a_broken_rule_422_on_every_route(app, client, keys, running):
    """The one rule: a body that cannot be read as JSON is a 400; JSON that breaks a field's
    rule (a wrong type, a value out of range, an unknown field) is a 422."""
    headers = {**keys["admin"], "Content-Type": "application/json"}
    for path in post_routes(app):
        refused(client.post(path, data=b'{"a": ', headers=headers), 400)
        refused(client.post(path, json={"unknown_field": 1}, headers=keys["admin"]), 422)
