"""Assignment requests and answers.

A unit's rules are written once, in `unit_problems`, over the functions of
experiments/bounds.py: the batch checks its units with it in plain Python (a nested marshmallow
schema costs about 100 µs a unit, most of a 10,000-unit batch) and the fast lane checks a single
request with it; UnitSchema's fields call the same functions of experiments/bounds.py.
"""

from marshmallow import Schema, ValidationError, fields

from api.experiments.schemas import Slug
from api.rules import Identifier, JsonObject, Moment, TimeZone
from experiments import bounds
from experiments.assignment.assign import MAX_BATCH

UNIT_FIELDS = frozenset({"unit_id", "attributes", "timezone"})
UNIT_ID_RULE = f"Required: 1 to {bounds.MAX_IDENTIFIER} characters, {bounds.IDENTIFIER_RULE}."
NOW = Moment(
    metadata={
        "description": "Simulated clock (ISO 8601); honoured for admin keys only. It always "
        "sees the latest allocation period, whichever node opened it."
    }
)


def unit_problems(unit) -> dict[str, list[str]]:
    """What is wrong with one unit of a request ({unit_id, attributes?, timezone?}), by field."""
    if not isinstance(unit, dict):
        return {"_schema": ["Must be an object with a unit_id."]}
    problems = {}
    if not bounds.is_identifier(unit.get("unit_id")):
        problems["unit_id"] = [UNIT_ID_RULE]
    if "attributes" in unit:
        attributes = unit["attributes"]
        if not isinstance(attributes, dict):
            problems["attributes"] = ["Must be an object."]
        else:
            problem = bounds.json_problem(attributes, max_bytes=bounds.MAX_ATTRIBUTES_BYTES)
            if problem:
                problems["attributes"] = [problem]
    timezone = unit.get("timezone")
    if timezone is not None and not bounds.is_time_zone(timezone):
        problems["timezone"] = [TimeZone.message(timezone)]
    for name in unit.keys() - UNIT_FIELDS:
        problems[name] = ["Unknown field."]
    return problems


class UnitSchema(Schema):
    unit_id = fields.String(required=True, validate=Identifier())
    attributes = JsonObject(
        max_bytes=bounds.MAX_ATTRIBUTES_BYTES,
        metadata={
            "description": "Attributes segment rules read (free-form JSON, at most "
            f"{bounds.MAX_JSON_DEPTH} levels, {bounds.MAX_ATTRIBUTES_BYTES // 1024} KiB)."
        },
    )
    timezone = fields.String(
        allow_none=True,
        validate=TimeZone(),
        metadata={"description": "IANA time zone name; default: the experiment's."},
    )


class AssignmentRequestSchema(UnitSchema):
    experiment = fields.String(required=True, validate=Slug)
    now = NOW


class UnitList(fields.Field):
    """The units of a batch, checked in plain Python by `unit_problems`."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("Must be a list of units.")
        if not 1 <= len(value) <= MAX_BATCH:
            raise ValidationError(f"Give between 1 and {MAX_BATCH:,} units.")
        errors: dict[int, dict[str, list[str]]] = {}
        for index, unit in enumerate(value):
            problems = unit_problems(unit)
            if problems:
                errors[index] = problems
        if errors:
            raise ValidationError(errors)
        return value


class BatchRequestSchema(Schema):
    experiment = fields.String(required=True, validate=Slug)
    units = UnitList(
        required=True,
        metadata={
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_BATCH,
            "items": {
                "type": "object",
                "required": ["unit_id"],
                "properties": {
                    "unit_id": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": bounds.MAX_IDENTIFIER,
                        "description": f"{bounds.IDENTIFIER_RULE[0].upper()}"
                        f"{bounds.IDENTIFIER_RULE[1:]}.",
                    },
                    "attributes": {
                        "type": "object",
                        "description": f"At most {bounds.MAX_JSON_DEPTH} levels, "
                        f"{bounds.MAX_ATTRIBUTES_BYTES // 1024} KiB.",
                    },
                    "timezone": {
                        "type": ["string", "null"],
                        "description": "IANA time zone name; default: the experiment's.",
                    },
                },
                "additionalProperties": False,
            },
        },
    )
    now = NOW


class AssignmentSchema(Schema):
    assignment_id = fields.String(
        allow_none=True, metadata={"description": "null when the experiment is concluded"}
    )
    experiment = fields.String()
    unit_id = fields.String()
    variant = fields.String(allow_none=True, metadata={"description": "null in the holdout"})
    factors = fields.Dict(allow_none=True)
    payload = fields.Dict(allow_none=True)
    segment = fields.String()
    propensity = fields.Float(
        metadata={"description": "The weight that chose the variant (the holdout's share)."}
    )
    period = fields.Integer()
    holdout = fields.Boolean()
    send_at = fields.AwareDateTime(allow_none=True)
    concluded = fields.Boolean()


class BatchAnswerSchema(Schema):
    assignments = fields.List(fields.Nested(AssignmentSchema))
