"""/v1/assignments: which variant a unit gets, one at a time or in batches.

Answers are dataclasses serialised straight to JSON (AssignmentSchema documents them): a
schema dump per unit would cost more than the assignment itself.
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
from api.db import get_database, get_runtime_cache
from api.jsonio import json_response
from experiments.assignment.assign import UnitRequest, assign

blp = Blueprint(
    "assignments",
    __name__,
    url_prefix="/v1/assignments",
    description="Ask which variant (timing, tone, channel) to send a unit.",
)


def unit_request(data: dict) -> UnitRequest:
    return UnitRequest(data["unit_id"], data.get("attributes"), data.get("timezone"))


@blp.route("")
class Assignments(MethodView):
    @requires("assign")
    @blp.arguments(AssignmentRequestSchema())
    @blp.response(200, AssignmentSchema)
    def post(self, body):
        """Assign one unit (sticky and deterministic)"""
        (answer,) = assign(
            database=get_database(),
            cache=get_runtime_cache(),
            experiment_key=body["experiment"],
            units=[unit_request(body)],
            now=simulated_now(body),
        )
        return json_response(answer)


@blp.route("/batch")
class AssignmentBatch(MethodView):
    @requires("assign")
    @blp.arguments(BatchRequestSchema())
    @blp.response(200, BatchAnswerSchema)
    def post(self, body):
        """Assign up to 10,000 units; answers in request order"""
        answers = assign(
            database=get_database(),
            cache=get_runtime_cache(),
            experiment_key=body["experiment"],
            units=[unit_request(u) for u in body["units"]],
            now=simulated_now(body),
        )
        return json_response({"assignments": answers})
