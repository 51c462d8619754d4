"""Every rule of the experiment body: 400/422, a message naming the field, nothing stored."""

import pytest

from tests.utils.factories import FACTORIAL, ONBOARDING, experiment_body


def variants(**changes):
    """Set a field on the first variant."""

    def mutate(body):
        body["variants"][0].update(changes)

    return mutate


def top(**changes):
    def mutate(body):
        for key, value in changes.items():
            if value is _DROP:
                body.pop(key, None)
            else:
                body[key] = value

    return mutate


_DROP = object()


def rule(**changes):
    def mutate(body):
        body["segments"][0]["rule"].update(changes)

    return mutate


def metric(index=0, **changes):
    def mutate(body):
        body["metrics"][index].update(changes)

    return mutate


def add_variant(variant):
    def mutate(body):
        body["variants"].append(variant)

    return mutate


def second_variant(**changes):
    def mutate(body):
        body["variants"][1].update(changes)

    return mutate


# (case, base body, mutation, the field the error names)
CASES = [
    ("key missing", ONBOARDING, top(key=_DROP), "key"),
    ("key not a slug", ONBOARDING, top(key="Onboarding Nudge"), "key"),
    ("key too long", ONBOARDING, top(key="a" * 65), "key"),
    ("name empty", ONBOARDING, top(name=""), "name"),
    ("unknown field", ONBOARDING, top(colour="blue"), "colour"),
    ("allocation unknown", ONBOARDING, top(allocation="epsilon"), "allocation"),
    ("stickiness unknown", ONBOARDING, top(stickiness="session"), "stickiness"),
    ("variant key invalid", ONBOARDING, variants(key="Morning Push"), "variants.0.key"),
    ("duplicate variant key", ONBOARDING, second_variant(key="morning-push"), "variants.1.key"),
    ("negative weight", ONBOARDING, variants(weight=-0.5), "variants.0.weight"),
    ("zero weight", ONBOARDING, variants(weight=0), "variants.0.weight"),
    ("weight not a number", ONBOARDING, variants(weight="half"), "variants.0.weight"),
    ("weights do not sum to 1", ONBOARDING, variants(weight=0.6), "variants"),
    ("some weights missing", ONBOARDING, second_variant(weight=None), "variants.1.weight"),
    ("one variant only", ONBOARDING, top(variants=[ONBOARDING["variants"][0]]), "variants"),
    ("no variants nor factors", ONBOARDING, top(variants=_DROP, factors=_DROP), "variants"),
    ("control unknown", ONBOARDING, top(control="nope"), "control"),
    (
        "factor level unknown",
        FACTORIAL,
        top(
            variants=[
                {"key": "a", "factors": {"timing": "noon", "tone": "friendly", "channel": "email"}},
                {
                    "key": "b",
                    "factors": {"timing": "morning", "tone": "friendly", "channel": "push"},
                },
            ],
            control="a",
        ),
        "variants.0.factors.timing",
    ),
    (
        "factor missing on a variant",
        FACTORIAL,
        top(
            variants=[
                {"key": "a", "factors": {"timing": "evening"}},
                {
                    "key": "b",
                    "factors": {"timing": "morning", "tone": "friendly", "channel": "push"},
                },
            ],
            control="a",
        ),
        "variants.0.factors",
    ),
    (
        "unknown factor on a variant",
        FACTORIAL,
        top(
            variants=[
                {
                    "key": "a",
                    "factors": {
                        "timing": "evening",
                        "tone": "friendly",
                        "channel": "push",
                        "colour": "red",
                    },
                },
                {
                    "key": "b",
                    "factors": {"timing": "morning", "tone": "friendly", "channel": "push"},
                },
            ],
            control="a",
        ),
        "variants.0.factors.colour",
    ),
    (
        "same factor levels twice",
        ONBOARDING,
        second_variant(factors={"timing": "morning", "channel": "push"}),
        "variants.1.factors",
    ),
    (
        "factor levels repeated",
        FACTORIAL,
        top(factors={"timing": ["morning", "morning"], "tone": ["a", "b"]}),
        "factors.timing",
    ),
    ("factor with no level", FACTORIAL, top(factors={"timing": []}), "factors.timing.value"),
    (
        "factorial too large",
        FACTORIAL,
        top(factors={f"f{i}": ["a", "b", "c"] for i in range(6)}),
        "factors",
    ),
    (
        "segment key reserved",
        ONBOARDING,
        top(segments=[{"key": "all", "rule": {"attribute": "x", "op": "eq", "value": 1}}]),
        "segments.0.key",
    ),
    (
        "segment key duplicated",
        ONBOARDING,
        top(
            segments=[
                {"key": "a", "rule": {"attribute": "x", "op": "eq", "value": 1}},
                {"key": "a", "rule": {"attribute": "y", "op": "eq", "value": 2}},
            ]
        ),
        "segments.1.key",
    ),
    ("rule operator unknown", ONBOARDING, rule(op="contains"), "segments.0.rule.op"),
    ("rule attribute empty", ONBOARDING, rule(attribute=""), "segments.0.rule.attribute"),
    ("rule 'in' needs a list", ONBOARDING, rule(op="in", value="ios"), "segments.0.rule.value"),
    ("rule 'lt' needs a number or string", ONBOARDING, rule(value=[1, 2]), "segments.0.rule.value"),
    ("rule value null", ONBOARDING, rule(value=None), "segments.0.rule.value"),
    ("metrics missing", ONBOARDING, top(metrics=_DROP), "metrics"),
    ("metrics empty", ONBOARDING, top(metrics=[]), "metrics"),
    ("metric type unknown", ONBOARDING, metric(type="count"), "metrics.0.type"),
    ("metric role unknown", ONBOARDING, metric(role="main"), "metrics.0.role"),
    ("no primary metric", ONBOARDING, metric(role="secondary"), "metrics"),
    ("two primary metrics", ONBOARDING, metric(1, role="primary", margin=None), "metrics"),
    ("guardrail without margin", ONBOARDING, metric(1, margin=None), "metrics.1.margin"),
    ("margin on a primary", ONBOARDING, metric(0, margin=0.1), "metrics.0.margin"),
    ("negative margin", ONBOARDING, metric(1, margin=-0.1), "metrics.1.margin"),
    ("metric key duplicated", ONBOARDING, metric(1, key="activated"), "metrics.1.key"),
    ("window zero", ONBOARDING, top(attribution_window_hours=0), "attribution_window_hours"),
    (
        "window too long",
        ONBOARDING,
        top(attribution_window_hours=10_000),
        "attribution_window_hours",
    ),
    ("holdout negative", ONBOARDING, top(holdout=-0.1), "holdout"),
    ("holdout too large", ONBOARDING, top(holdout=0.9), "holdout"),
    (
        "quiet hour out of range",
        ONBOARDING,
        top(quiet_hours={"start": 24, "end": 8}),
        "quiet_hours.start",
    ),
    ("quiet hours equal", ONBOARDING, top(quiet_hours={"start": 8, "end": 8}), "quiet_hours"),
    (
        "quiet hour fractional",
        ONBOARDING,
        top(quiet_hours={"start": 21.5, "end": 8}),
        "quiet_hours.start",
    ),
    ("bandit on a fixed split", ONBOARDING, top(bandit={"update_every_seconds": 60}), "bandit"),
    ("bandit floor too high", FACTORIAL, top(bandit={"min_weight": 0.2}), "bandit.min_weight"),
    (
        "bandit cadence zero",
        FACTORIAL,
        top(bandit={"update_every_seconds": 0}),
        "bandit.update_every_seconds",
    ),
    ("bandit unknown setting", FACTORIAL, top(bandit={"epsilon": 0.1}), "bandit.epsilon"),
    (
        "relative threshold of caring above 1",
        ONBOARDING,
        top(relative_threshold_of_caring=1.5),
        "relative_threshold_of_caring",
    ),
    (
        "both thresholds of caring",
        ONBOARDING,
        top(threshold_of_caring=0.001, relative_threshold_of_caring=0.01),
        "threshold_of_caring",
    ),
]


@pytest.mark.parametrize(
    ("base", "mutate", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_experiment_is_rejected_naming_the_field(client, keys, base, mutate, field):
    body = experiment_body(base)
    mutate(body)
    response = client.post("/v1/experiments", json=body, headers=keys["manage"])
    assert response.status_code == 422, response.json
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert field in response.json["errors"], response.json["errors"]
    assert field in response.json["message"]
    assert client.get("/v1/experiments", headers=keys["read"]).json == []


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"key": "x",}', b"\xff\xfe"],
    ids=["broken", "trailing comma", "not utf-8"],
)
def test_malformed_json_is_400(client, keys, raw):
    headers = {**keys["manage"], "Content-Type": "application/json"}
    response = client.post("/v1/experiments", data=raw, headers=headers)
    assert response.status_code == 400
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert client.get("/v1/experiments", headers=keys["read"]).json == []


@pytest.mark.parametrize("body", [[], "text", 42, None], ids=["list", "string", "number", "null"])
def test_a_body_that_is_not_an_object_is_rejected(client, keys, body):
    response = client.post("/v1/experiments", json=body, headers=keys["manage"])
    assert response.status_code in (400, 422)
    assert client.get("/v1/experiments", headers=keys["read"]).json == []


def test_all_errors_are_reported_at_once(client, keys):
    body = experiment_body(key="BAD KEY", holdout=3)
    body["variants"][0]["weight"] = -1
    response = client.post("/v1/experiments", json=body, headers=keys["manage"])
    assert response.status_code == 422
    assert {"key", "holdout", "variants.0.weight"} <= set(response.json["errors"])
    assert "(and 2 more)" in response.json["message"]


@pytest.mark.parametrize(
    ("base", "control"),
    [(ONBOARDING, "morning-push"), (FACTORIAL, "timing=morning,tone=friendly,channel=email")],
    ids=["listed variants: the first", "generated factorial: every factor's first level"],
)
def test_without_a_control_the_first_variant_is_the_control(client, keys, base, control):
    response = client.post(
        "/v1/experiments", json=experiment_body(base, control=None), headers=keys["manage"]
    )
    assert response.status_code == 201, response.json
    assert response.json["control"] == control


@pytest.mark.parametrize(
    ("path", "unknown"),
    [
        ("/v1/experiments?stauts=running", "stauts"),
        ("/v1/learnings?experimnt=onboarding-nudge&page=1", "experimnt"),
        ("/v1/learnings?tag=a&Tag=b", "Tag"),
        ("/v1/learnings/evidence?metric=a&factor=b&level=c&baseline_level=d", "baseline_level"),
        ("/v1/experiments/onboarding-nudge/results?metrc=activated", "metrc"),
    ],
)
def test_an_unknown_query_parameter_is_a_422_naming_it(client, keys, path, unknown):
    """As an unknown field of a body is: a misspelt filter would otherwise filter nothing."""
    client.post("/v1/experiments", json=experiment_body(), headers=keys["manage"])
    response = client.get(path, headers=keys["read"])
    assert response.status_code == 422, response.json
    assert response.json["errors"] == {unknown: ["Unknown parameter."]}


def test_pagination_parameters_are_known_where_a_list_pages(client, keys):
    for path in ("/v1/experiments?page=2&page_size=5", "/v1/learnings?page=1&page_size=10&tag=x"):
        assert client.get(path, headers=keys["read"]).status_code == 200, path
