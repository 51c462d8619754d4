"""Outcome events and the counts answered.

An event's rules are experiments/bounds.py's, applied in plain Python by `parse_event` (as a
batch's units are): a marshmallow load per event would cost more than storing it.
OutcomeEventSchema documents the same fields and loads through `parse_event`, so the one
event of POST /v1/outcomes and each event of a batch meet the same rules.
"""

from marshmallow import Schema, ValidationError, fields, validate

from api.rules import Batch, Moment, Number, Slug, identifier
from experiments import bounds
from experiments.outcomes.ingest import OutcomeEvent

EVENT_FIELDS = {
    "event_id",
    "experiment",
    "unit_id",
    "assignment_id",
    "metric",
    "value",
    "occurred_at",
}


def parse_event(event) -> tuple[OutcomeEvent | None, dict[str, list[str]]]:
    """The event, or the problems of each field."""
    if not isinstance(event, dict):
        return None, {"_schema": ["Must be an object (an outcome event)."]}
    problems: dict[str, list[str]] = {}
    event_id = event.get("event_id")
    if not bounds.is_identifier(event_id):
        problems["event_id"] = [f"Required: {bounds.IDENTIFIER_SPAN}."]
    metric = event.get("metric")
    if not bounds.is_slug(metric):
        problems["metric"] = ["Required: a metric key (a slug)."]
    experiment = event.get("experiment")
    if experiment is not None and not bounds.is_slug(experiment):
        problems["experiment"] = ["Must be an experiment key (a slug)."]
    unit_id = event.get("unit_id")
    if unit_id is not None and not bounds.is_identifier(unit_id):
        problems["unit_id"] = [f"Must be {bounds.IDENTIFIER_SPAN}."]
    assignment_id = event.get("assignment_id")
    longest = bounds.MAX_ASSIGNMENT_ID
    if assignment_id is not None and not bounds.is_identifier(assignment_id, longest):
        problems["assignment_id"] = [f"Must be an assignment id (1 to {longest} characters)."]
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


class OutcomeEventSchema(Schema):
    """One event, as `parse_event` reads it (its fields are what the OpenAPI document says)."""

    class Meta:
        json_schema = {
            "description": "Give `assignment_id`, or `experiment` and `unit_id`.",
            "anyOf": [{"required": ["assignment_id"]}, {"required": ["experiment", "unit_id"]}],
        }

    event_id = identifier(
        required=True, metadata={"description": f"{bounds.IDENTIFIER_RULE.capitalize()}."}
    )
    experiment = fields.String(
        allow_none=True, validate=Slug, metadata={"description": "experiment key"}
    )
    unit_id = identifier(allow_none=True)
    assignment_id = identifier(
        bounds.MAX_ASSIGNMENT_ID,
        allow_none=True,
        metadata={"description": "as the assignment answered it; null: by experiment and unit_id"},
    )
    metric = fields.String(
        required=True, validate=Slug, metadata={"description": "a metric key of the experiment"}
    )
    value = Number(
        load_default=1,
        validate=validate.Range(-bounds.MAX_OUTCOME_VALUE, bounds.MAX_OUTCOME_VALUE),
        metadata={"description": "1 for a binary metric"},
    )
    occurred_at = Moment(
        allow_none=True, metadata={"description": "when it happened (default: when received):"}
    )

    def load(self, data, **kwargs) -> OutcomeEvent:
        event, problems = parse_event(data)
        if problems:
            raise ValidationError(problems)
        return event


class EventBatchSchema(Schema):
    events = Batch(OutcomeEventSchema, noun="events", parse=parse_event, required=True)


class CountsSchema(Schema):
    accepted = fields.Integer(metadata={"description": "new events stored, attributed or not"})
    duplicates = fields.Integer(metadata={"description": "events already received"})
    unattributed = fields.Integer(
        metadata={
            "description": "of the accepted: no assignment, unknown metric or experiment, "
            "or outside the attribution window (stored, excluded from results)"
        }
    )
