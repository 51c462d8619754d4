"""Assignment requests and answers.

A unit's rules are experiments/bounds.py's: UnitSchema's fields call its checks (a single
request, through marshmallow), and a batch's units and the fast lane's single request are
checked by its `unit_problems` in plain Python (`parse_unit`).
"""

from marshmallow import Schema, fields

from api.rules import Batch, Identifier, JsonObject, Moment, Slug, TimeZone
from experiments import bounds
from experiments.assignment.assign import UnitRequest

NOW = Moment(
    metadata={
        "description": "Simulated clock (ISO 8601); honoured for admin keys only. It always "
        "sees the latest allocation period, whichever node opened it."
    }
)


def parse_unit(unit) -> tuple[UnitRequest | None, dict[str, list[str]]]:
    """The unit as `assign` takes it, or the problems of each field."""
    problems = bounds.unit_problems(unit)
    if problems:
        return None, problems
    return UnitRequest(unit["unit_id"], unit.get("attributes"), unit.get("timezone")), problems


class UnitSchema(Schema):
    unit_id = fields.String(
        required=True,
        validate=Identifier(),
        metadata={
            "description": f"{bounds.IDENTIFIER_RULE[0].upper()}{bounds.IDENTIFIER_RULE[1:]}."
        },
    )
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


class BatchRequestSchema(Schema):
    experiment = fields.String(required=True, validate=Slug)
    units = Batch(UnitSchema, noun="units", parse=parse_unit, required=True)
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
