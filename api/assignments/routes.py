"""/v1/assignments: which variant a unit gets, one at a time or in batches.

A single answer is dumped by AssignmentSchema. A batch's answers are serialised straight from
their dataclasses (a schema dump per unit would cost more than the assignment itself);
tests/api/test_assignments.py proves those bytes equal BatchAnswerSchema's dump.
"""

from flask.views import MethodView

from api.assignments.schemas import (
    AssignmentRequestSchema,
    AssignmentSchema,
    BatchAnswerSchema,
    BatchRequestSchema,
)
from api.auth import requires, simulated_now
from api.blueprint import Blueprint
from api.db import get_database, get_snapshot_cache
from api.jsonio import json_response
from experiments.assignment.assign import AssignmentAnswer, UnitRequest, assign

blp = Blueprint(
    "assignments",
    __name__,
    url_prefix="/v1/assignments",
    description="Ask which variant (timing, tone, channel) to send a unit.",
)


def _assign(body: dict, units: list[UnitRequest]) -> list[AssignmentAnswer]:
    return assign(
        database=get_database(),
        cache=get_snapshot_cache(),
        experiment_key=body["experiment"],
        units=units,
        now=simulated_now(body),
    )


def assigns(request_schema, answer_schema):
    """An assignment view: an assign key's, answering 200 with `answer_schema`, 404 for an
    unknown experiment, 409 for one that is not running."""

    def decorate(post):
        post = blp.alt_response(
            409,
            description="The experiment is a draft or paused: it assigns only while running "
            "(concluded, it answers with its winner).",
        )(post)
        post = blp.alt_response(404, description="No experiment with this key.")(post)
        post = blp.response(200, answer_schema)(post)
        post = blp.arguments(request_schema)(post)
        return requires("assign")(post)

    return decorate


@blp.route("")
class Assignments(MethodView):
    @assigns(AssignmentRequestSchema(), AssignmentSchema)
    def post(self, body):
        """Assign one unit (sticky and deterministic)"""
        unit = UnitRequest(body["unit_id"], body.get("attributes"), body.get("timezone"))
        (answer,) = _assign(body, [unit])
        return answer


@blp.route("/batch")
class AssignmentBatch(MethodView):
    @assigns(BatchRequestSchema(), BatchAnswerSchema)
    def post(self, body):
        """Assign up to 10,000 units; answers in request order"""
        return json_response({"assignments": _assign(body, body["units"])})
