"""/v1/outcomes: what happened after a message, one event or up to 10,000 at a time."""

from flask.views import MethodView

from api.auth import requires
from api.blueprint import Blueprint
from api.db import get_database, get_snapshot_cache
from api.outcomes.schemas import CountsSchema, EventBatchSchema, OutcomeEventSchema
from experiments.outcomes.ingest import ingest

blp = Blueprint(
    "outcomes",
    __name__,
    url_prefix="/v1/outcomes",
    description="Report outcomes (conversions, unsubscribes, suppressions…); idempotent by "
    "event_id.",
)


@blp.route("")
class Outcomes(MethodView):
    @requires("assign")
    @blp.arguments(OutcomeEventSchema())
    @blp.response(202, CountsSchema)
    def post(self, event):
        """Report one outcome event"""
        return ingest(database=get_database(), cache=get_snapshot_cache(), events=[event])


@blp.route("/batch")
class OutcomeBatch(MethodView):
    @requires("assign")
    @blp.arguments(EventBatchSchema())
    @blp.response(202, CountsSchema)
    def post(self, body):
        """Report up to 10,000 outcome events; one invalid event → 422 naming it, nothing
        stored"""
        return ingest(database=get_database(), cache=get_snapshot_cache(), events=body["events"])
