"""/v1/outcomes: what happened after a message, one event or up to 10,000 at a time."""

from flask.views import MethodView
from flask_smorest import abort

from api.auth import requires
from api.blueprint import Blueprint, json_body
from api.db import get_database, get_runtime_cache
from api.errors import ErrorSchema
from api.jsonio import json_response
from api.outcomes.schemas import EVENT_DOC, CountsSchema, EventBatchSchema, parse_event
from experiments.outcomes.ingest import ingest

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
    @blp.alt_response(
        422, schema=ErrorSchema, description="The event breaks a rule; nothing was stored."
    )
    def post(self):
        """Report one outcome event"""
        event, problems = parse_event(json_body())
        if problems:
            abort(422, errors=problems)
        return _counts([event])


@blp.route("/batch")
class OutcomeBatch(MethodView):
    @requires("assign")
    @blp.arguments(EventBatchSchema())
    @blp.response(202, CountsSchema)
    def post(self, body):
        """Report up to 10,000 outcome events; one invalid event → 422 naming it, nothing
        stored"""
        return _counts(body["events"])
