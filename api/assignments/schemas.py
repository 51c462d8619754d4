"""Assignment requests and answers."""

from datetime import UTC

from marshmallow import Schema, ValidationError, fields, validate

from api.experiments.schemas import Slug
from experiments.assignment import MAX_BATCH

UNIT_ID = fields.String(required=True, validate=validate.Length(1, 200))
NOW = fields.AwareDateTime(
    default_timezone=UTC,
    metadata={
        "description": "Simulated clock (ISO 8601); honoured for admin keys only. It always "
        "sees the latest allocation period, whichever node opened it."
    },
)


class UnitSchema(Schema):
    unit_id = fields.String(required=True, validate=validate.Length(1, 200))
    attributes = fields.Dict(
        keys=fields.String(), metadata={"description": "Attributes segment rules read."}
    )
    timezone = fields.String(
        validate=validate.Length(1, 64), metadata={"description": "IANA time zone name."}
    )


class AssignmentRequestSchema(UnitSchema):
    experiment = fields.String(required=True, validate=Slug)
    now = NOW


UNIT_FIELDS = {"unit_id", "attributes", "timezone"}


class UnitList(fields.Field):
    """The units of a batch, checked in plain Python: a nested marshmallow schema costs about
    100 µs a unit, which is most of the time of a 10,000-unit batch. Same rules as UnitSchema."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("Must be a list of units.")
        if not 1 <= len(value) <= MAX_BATCH:
            raise ValidationError(f"Give between 1 and {MAX_BATCH:,} units.")
        errors: dict[int, dict[str, list[str]]] = {}
        for index, unit in enumerate(value):
            problems = _unit_problems(unit)
            if problems:
                errors[index] = problems
        if errors:
            raise ValidationError(errors)
        return value


def _unit_problems(unit) -> dict[str, list[str]]:
    if not isinstance(unit, dict):
        return {"_schema": ["Must be an object with a unit_id."]}
    problems = {}
    unit_id = unit.get("unit_id")
    if not isinstance(unit_id, str) or not 1 <= len(unit_id) <= 200:
        problems["unit_id"] = ["Required: a string of 1 to 200 characters."]
    if "attributes" in unit and not isinstance(unit["attributes"], dict):
        problems["attributes"] = ["Must be an object."]
    timezone = unit.get("timezone")
    if timezone is not None and (not isinstance(timezone, str) or not 1 <= len(timezone) <= 64):
        problems["timezone"] = ["Must be an IANA time zone name."]
    for name in unit.keys() - UNIT_FIELDS:
        problems[name] = ["Unknown field."]
    return problems


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
                    "unit_id": {"type": "string", "minLength": 1, "maxLength": 200},
                    "attributes": {"type": "object"},
                    "timezone": {"type": "string", "description": "IANA time zone name"},
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
