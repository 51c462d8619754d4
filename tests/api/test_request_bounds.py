"""Every field of every request schema is bounded: a string in length and characters, a number
in a finite range, a list in length, a free-form object in depth and size. A new field
declared without a bound fails here, before a fuzzer finds what it lets through."""

import pytest
from marshmallow import Schema, fields, validate

from api.assignments.schemas import UnitSchema, parse_unit
from api.outcomes.schemas import OutcomeEventSchema, parse_event
from api.rules import Batch, FullMatch, Identifier, JsonObject, Moment, Number, Text, TimeZone
from experiments import bounds

# Fields checked by hand-written code instead of a validator, each with the test that covers it.
CHECKED_IN_PLAIN_PYTHON = {
    # experiments.spec._segments: a scalar, or a list of at most 1,000 (test_hostile_input).
    ("RuleSchema", "value"),
}


def request_schemas(app):
    """{name: (schema, where it is read: "json" or "query")} of every schema a view reads its
    arguments with."""
    found = {}
    for view in app.view_functions.values():
        for method in ("get", "post", "put", "patch", "delete"):
            function = getattr(getattr(view, "view_class", None), method, None)
            apidoc = getattr(function, "_apidoc", {})
            for parameter in apidoc.get("arguments", {}).get("parameters", []):
                schema = parameter["schema"]
                found[type(schema).__name__] = (schema, parameter["in"])
    return found


def problems(schema, path="", json=True):
    """Each field of `schema` (recursively) that lacks a bound, as 'Schema.field: why'. In a
    JSON body a number field must also refuse strings (a query string has nothing else)."""
    name = type(schema).__name__
    for field_name, field in schema.fields.items():
        where = f"{path}{name}.{field_name}"
        if (name, field_name) in CHECKED_IN_PLAIN_PYTHON:
            continue
        why = unbounded(field, where, json)
        if why:
            yield f"{where}: {why}"


def unbounded(field, where, json=True) -> str | None:
    validators = list(field.validators)
    lengths = [
        v
        for v in validators
        if isinstance(v, validate.Length) and (v.max is not None or v.equal is not None)
    ]
    ranges = [
        v
        for v in validators
        if isinstance(v, validate.Range) and v.min is not None and v.max is not None
    ]
    choices = [v for v in validators if isinstance(v, validate.OneOf)]
    if isinstance(field, Moment | fields.Boolean) or choices:
        return None
    if isinstance(field, Batch):  # checked in plain Python; its items' schema documents them
        return unbounded(field.inner, where, json)
    if isinstance(field, fields.String):  # Url and Email too
        if any(isinstance(v, FullMatch | Identifier | Text | TimeZone) for v in validators):
            return None
        return "a string needs a pattern, or an identifier or text rule (api/rules.py)"
    if isinstance(field, fields.Number):
        if json and isinstance(field, fields.Float) and not isinstance(field, Number):
            return "a number in a JSON body must refuse strings (api.rules.Number)"
        if json and isinstance(field, fields.Integer) and not field.strict:
            return "an integer in a JSON body must be strict (no 2.7, no '12')"
        return None if ranges else "a number needs a range with both ends"
    if isinstance(field, JsonObject):
        return None
    if isinstance(field, fields.Dict):
        if not lengths:
            return "a dict needs a maximum number of keys (or JsonObject)"
        for part in (field.key_field, field.value_field):
            why = part is not None and unbounded(part, where, json)
            if why:
                return why
        return None
    if isinstance(field, fields.List):
        if not lengths:
            return "a list needs a maximum length"
        return unbounded(field.inner, where, json)
    if isinstance(field, fields.Nested):
        inner = list(problems(field.schema, path=f"{where} → ", json=json))
        return "; ".join(inner) or None
    return f"no rule for a {type(field).__name__} field"


def test_every_request_field_is_bounded(app):
    schemas = request_schemas(app)
    assert {"ExperimentInSchema", "BatchRequestSchema", "ManualLearningSchema"} <= set(schemas)
    found = [
        problem
        for schema, location in schemas.values()
        for problem in problems(schema, json=location == "json")
    ]
    assert found == []


def test_the_bounds_check_sees_an_unbounded_field():
    """The check above can fail: a schema with a bare string, number, list and dict."""

    class CarelessSchema(Schema):
        name = fields.String()
        count = fields.Integer(strict=True, validate=validate.Range(min=0))
        share = fields.Float(validate=validate.Range(0, 1))
        tags = fields.List(fields.String(validate=Identifier()))
        extra = fields.Dict()

    found = list(problems(CarelessSchema()))
    assert [line.split(":")[0] for line in found] == [
        "CarelessSchema.name",
        "CarelessSchema.count",
        "CarelessSchema.share",
        "CarelessSchema.tags",
        "CarelessSchema.extra",
    ]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"a": [1, {"b": "c"}]}, None),
        ({"a": "\x00"}, "Strings"),
        ({"\u202e": 1}, "Keys"),
        ({"n": 2**53 + 1}, "Numbers"),
        ({"n": 1e20}, "Numbers"),
        ({"n": float("inf")}, "finite"),
        ({"s": "x" * 100}, "Too large"),
        ({"o": object()}, "Not JSON"),
    ],
)
def test_json_problem_names_each_class(value, problem):
    found = bounds.json_problem(value, max_bytes=64)
    assert (found is None) if problem is None else (problem in found)


def test_json_problem_walks_any_depth_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert "Nested too deep" in bounds.json_problem(deep, max_bytes=10**9)


UNITS = [
    {"unit_id": "u-1"},
    {"unit_id": "u-1", "attributes": {"plan": "pro", "days": 3}, "timezone": "Europe/Paris"},
    {"unit_id": "u-1", "timezone": None},
    {"unit_id": "u-1", "attributes": {}},
    {},
    {"unit_id": ""},
    {"unit_id": 5},
    {"unit_id": "x" * 201},
    {"unit_id": "a\u202eb"},
    {"unit_id": "u", "attributes": None},
    {"unit_id": "u", "attributes": [1]},
    {"unit_id": "u", "attributes": {"s": "\x00"}},
    {"unit_id": "u", "attributes": {"n": 1e20}},
    {"unit_id": "u", "timezone": "Mars/Olympus"},
    {"unit_id": "u", "timezone": "../etc/passwd"},
    {"unit_id": "u", "timezone": 3},
    {"unit_id": "u", "colour": "red"},
    ["u"],
]
EVENTS = [
    {"event_id": "e", "metric": "activated", "experiment": "x", "unit_id": "u"},
    {"event_id": "e", "metric": "activated", "assignment_id": "0" * 32, "value": 2.5},
    {"event_id": "e", "metric": "m", "assignment_id": "a", "occurred_at": "2026-01-01T00:00:00"},
    {"event_id": "e", "metric": "m", "assignment_id": "a", "occurred_at": None},
    {"event_id": "e", "metric": "m", "assignment_id": None, "experiment": "x", "unit_id": "u"},
    {"event_id": "e", "metric": "m"},
    {"event_id": "e", "metric": "m", "experiment": "x"},
    {"event_id": "", "metric": "m", "assignment_id": "a"},
    {"event_id": "e", "metric": "Not A Slug", "assignment_id": "a"},
    {"event_id": "e", "metric": "m", "experiment": "x\n", "unit_id": "u"},
    {"event_id": "e", "metric": "m", "assignment_id": "0" * 33},
    {"event_id": "e", "metric": "m", "assignment_id": "a", "value": "1"},
    {"event_id": "e", "metric": "m", "assignment_id": "a", "value": True},
    {"event_id": "e", "metric": "m", "assignment_id": "a", "value": 1e10},
    {"event_id": "e", "metric": "m", "assignment_id": "a", "occurred_at": "1999-12-31T00:00:00"},
    {"event_id": "e", "metric": "m", "assignment_id": "a", "colour": "blue"},
    "e",
]


@pytest.mark.parametrize("unit", UNITS)
def test_a_unit_the_plain_check_accepts_is_one_unit_schema_accepts(unit):
    """The fast lane serves what `parse_unit` accepts, as the view would serve it through
    AssignmentRequestSchema; a batch checks its units with it too. The two agree."""
    unit_request, problems = parse_unit(unit)
    assert (unit_request is not None) == (not problems)
    assert bool(problems) == bool(UnitSchema().validate(unit))


@pytest.mark.parametrize("event", EVENTS)
def test_an_event_is_accepted_by_the_plain_check_as_by_its_documented_fields(event):
    """OutcomeEventSchema loads through `parse_event`; its fields, which the OpenAPI document
    shows, accept what parse_event accepts (but for `anyOf`, which no field says)."""
    parsed, problems = parse_event(event)
    assert (parsed is not None) == (not problems)
    anyof_only = problems == {"assignment_id": ["Give assignment_id, or experiment and unit_id."]}
    by_fields = Schema.validate(OutcomeEventSchema(), event)
    assert bool(by_fields) == (bool(problems) and not anyof_only), by_fields
