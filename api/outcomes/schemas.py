"""Outcome events and the counts answered.

Events are checked in plain Python (as assignment batches are): a nested marshmallow schema
per event would cost more than storing it. The OpenAPI description is given by hand.
"""

import math
from datetime import UTC, datetime

from marshmallow import Schema, ValidationError, fields

from experiments.outcomes import MAX_BATCH, OutcomeEvent
from experiments.spec import SLUG

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
    "properties": {
        "event_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "experiment": {"type": "string", "description": "experiment key"},
        "unit_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "assignment_id": {"type": "string", "minLength": 1, "maxLength": 32},
        "metric": {"type": "string", "description": "a metric key of the experiment"},
        "value": {"type": "number", "default": 1, "description": "1 for a binary metric"},
        "occurred_at": {
            "type": "string",
            "format": "date-time",
            "description": "when it happened (default: when received); UTC if no offset",
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
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 200:
        problems["event_id"] = ["Required: a string of 1 to 200 characters."]
    metric = event.get("metric")
    if not isinstance(metric, str) or not SLUG.match(metric):
        problems["metric"] = ["Required: a metric key (a slug)."]
    experiment = event.get("experiment")
    if experiment is not None and (not isinstance(experiment, str) or not SLUG.match(experiment)):
        problems["experiment"] = ["Must be an experiment key (a slug)."]
    unit_id = event.get("unit_id")
    if unit_id is not None and (not isinstance(unit_id, str) or not 1 <= len(unit_id) <= 200):
        problems["unit_id"] = ["Must be a string of 1 to 200 characters."]
    assignment_id = event.get("assignment_id")
    if assignment_id is not None and (
        not isinstance(assignment_id, str) or not 1 <= len(assignment_id) <= 32
    ):
        problems["assignment_id"] = ["Must be an assignment id (1 to 32 characters)."]
    if assignment_id is None and (experiment is None or unit_id is None):
        problems.setdefault("assignment_id", []).append(
            "Give assignment_id, or experiment and unit_id."
        )
    value = event.get("value", 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems["value"] = ["Must be a finite number."]
    occurred_at = event.get("occurred_at")
    moment = None
    if occurred_at is not None:
        try:
            moment = datetime.fromisoformat(occurred_at)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        except (TypeError, ValueError):
            problems["occurred_at"] = ["Must be an ISO 8601 date and time."]
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


BATCH_DOC = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "events": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": EVENT_DOC}
    },
    "additionalProperties": False,
}


class CountsSchema(Schema):
    accepted = fields.Integer(metadata={"description": "new events stored, attributed or not"})
    duplicates = fields.Integer(metadata={"description": "events already received"})
    unattributed = fields.Integer(
        metadata={
            "description": "of the accepted: no assignment, unknown metric or experiment, "
            "or outside the attribution window (stored, excluded from results)"
        }
    )
