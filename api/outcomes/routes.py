"""/v1/outcomes: what happened after a message, one event or up to 10,000 at a time."""

from flask import request
from flask.views import MethodView
from marshmallow import ValidationError

from api.auth import requires
from api.db import get_database, get_runtime_cache
from api.errors import error_payload
from api.jsonio import json_response
from api.outcomes.schemas import BATCH_DOC, EVENT_DOC, CountsSchema, EventList, parse_event
from api.parser import Blueprint
from experiments.outcomes import ingest

blp = Blueprint(
    "outcomes",
    __name__,
    url_prefix="/v1/outcomes",
    description="Report outcomes (conversions, unsubscribes, suppressions…); idempotent by "
    "event_id.",
)


def _counts(events) -> object:
    counts = ingest(database=get_database(), cache=get_runtime_cache(), events=events)
    return json_response(counts, status=202)


@blp.route("")
class Outcomes(MethodView):
    @requires("assign")
    @blp.doc(requestBody={"required": True, "content": {"application/json": {"schema": EVENT_DOC}}})
    @blp.response(202, CountsSchema)
    @blp.alt_response(400, description="The event is not valid; nothing was stored.")
    def post(self):
        """Report one outcome event"""
        body = request.get_json(silent=True)
        if body is None:
            return json_response(error_payload(400), status=400)
        event, problems = parse_event(body)
        if problems:
            return json_response(error_payload(400, errors=problems), status=400)
        return _counts([event])


@blp.route("/batch")
class OutcomeBatch(MethodView):
    @requires("assign")
    @blp.doc(
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": BATCH_DOC}},
        }
    )
    @blp.response(202, CountsSchema)
    @blp.alt_response(400, description="An event is not valid (errors name its index).")
    def post(self):
        """Report up to 10,000 outcome events; one invalid event → 400, nothing stored"""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return json_response(error_payload(400), status=400)
        unknown = body.keys() - {"events"}
        if unknown:
            errors = {name: ["Unknown field."] for name in sorted(unknown)}
            return json_response(error_payload(400, errors=errors), status=400)
        if "events" not in body:
            errors = {"events": ["Required: a list of events."]}
            return json_response(error_payload(400, errors=errors), status=400)
        try:
            events = EventList().deserialize(body["events"])
        except ValidationError as error:
            return json_response(error_payload(400, errors={"events": error.messages}), 400)
        return _counts(events)
