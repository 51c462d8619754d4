"""Outcome events and the counts answered.

Events are checked in plain Python (as assignment batches are): a nested marshmallow schema
per event would cost more than storing it. The OpenAPI description is given by hand.
"""

from marshmallow import Schema, ValidationError, fields

from experiments import bounds
from experiments.outcomes.ingest import MAX_BATCH, OutcomeEvent
from experiments.spec import SLUG, SLUG_PATTERN

IDENTIFIER_RULE = f"1 to {bounds.MAX_IDENTIFIER} characters, {bounds.IDENTIFIER_RULE}"

EVENT_FIELDS = {
    "event_id",
    "experiment",
    "unit_id",
    "assignment_id",
    "metric",
    "value",
    "occurred_at",
}
EVENT_DOC = {
    "type": "object",
    "required": ["event_id", "metric"],
    "description": "Give `assignment_id`, or `experiment` and `unit_id`.",
    "anyOf": [{"required": ["assignment_id"]}, {"required": ["experiment", "unit_id"]}],
    "properties": {
        "event_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": bounds.MAX_IDENTIFIER,
            "description": f"Printable characters only; {bounds.IDENTIFIER_RULE}.",
        },
        "experiment": {
            "type": ["string", "null"],
            "pattern": SLUG_PATTERN,
            "description": "experiment key",
        },
        "unit_id": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": bounds.MAX_IDENTIFIER,
        },
        "assignment_id": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": 32,
            "description": "as the assignment answered it; null: by experiment and unit_id",
        },
        "metric": {
            "type": "string",
            "pattern": SLUG_PATTERN,
            "description": "a metric key of the experiment",
        },
        "value": {
            "type": "number",
            "default": 1,
            "minimum": -bounds.MAX_OUTCOME_VALUE,
            "maximum": bounds.MAX_OUTCOME_VALUE,
            "description": "1 for a binary metric",
        },
        "occurred_at": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": f"when it happened (default: when received): {bounds.MOMENT_RULE}",
        },
    },
    "additionalProperties": False,
}


def parse_event(event) -> tuple[OutcomeEvent | None, dict[str, list[str]]]:
    """The event, or the problems of each field."""
    if not isinstance(event, dict):
        return None, {"_schema": ["Must be an object (an outcome event)."]}
    problems: dict[str, list[str]] = {}
    event_id = event.get("event_id")
    if not bounds.is_identifier(event_id):
        problems["event_id"] = [f"Required: {IDENTIFIER_RULE}."]
    metric = event.get("metric")
    if not isinstance(metric, str) or not SLUG.fullmatch(metric):
        problems["metric"] = ["Required: a metric key (a slug)."]
    experiment = event.get("experiment")
    if experiment is not None and (
        not isinstance(experiment, str) or not SLUG.fullmatch(experiment)
    ):
        problems["experiment"] = ["Must be an experiment key (a slug)."]
    unit_id = event.get("unit_id")
    if unit_id is not None and not bounds.is_identifier(unit_id):
        problems["unit_id"] = [f"Must be {IDENTIFIER_RULE}."]
    assignment_id = event.get("assignment_id")
    if assignment_id is not None and not bounds.is_identifier(assignment_id, 32):
        problems["assignment_id"] = ["Must be an assignment id (1 to 32 characters)."]
    if assignment_id is None and (experiment is None or unit_id is None):
        problems.setdefault("assignment_id", []).append(
            "Give assignment_id, or experiment and unit_id."
        )
    value = event.get("value", 1.0)
    problem = bounds.outcome_value_problem(value)
    if problem:
        problems["value"] = [problem]
    occurred_at = event.get("occurred_at")
    moment = None
    if occurred_at is not None:
        try:
            moment = bounds.parse_moment(occurred_at)
        except ValueError as error:
            problems["occurred_at"] = [str(error)]
    for name in event.keys() - EVENT_FIELDS:
        problems[name] = ["Unknown field."]
    if problems:
        return None, problems
    return (
        OutcomeEvent(
            event_id=event_id,
            metric=metric,
            value=float(value),
            experiment=experiment,
            unit_id=unit_id,
            assignment_id=assignment_id,
            occurred_at=moment,
        ),
        {},
    )


class EventList(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("Must be a list of events.")
        if not 1 <= len(value) <= MAX_BATCH:
            raise ValidationError(f"Give between 1 and {MAX_BATCH:,} events.")
        events, errors = [], {}
        for index, item in enumerate(value):
            event, problems = parse_event(item)
            if problems:
                errors[index] = problems
            events.append(event)
        if errors:
            raise ValidationError(errors)
        return events


class EventBatchSchema(Schema):
    events = EventList(
        required=True,
        metadata={"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": EVENT_DOC},
    )


class CountsSchema(Schema):
    accepted = fields.Integer(metadata={"description": "new events stored, attributed or not"})
    duplicates = fields.Integer(metadata={"description": "events already received"})
    unattributed = fields.Integer(
        metadata={
            "description": "of the accepted: no assignment, unknown metric or experiment, "
            "or outside the attribution window (stored, excluded from results)"
        }
    )
