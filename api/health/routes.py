"""/health: is the service up, and can it reach its database?"""

from flask.views import MethodView
from marshmallow import Schema, fields

from api.blueprint import Blueprint
from api.db import get_database
from experiments import health

blp = Blueprint("health", __name__, url_prefix="/health", description="Liveness and readiness.")


class HealthSchema(Schema):
    status = fields.String(metadata={"enum": ["ok", "degraded"]})
    database = fields.String()
    schema = fields.String(metadata={"description": "'up to date', or what is missing"})
    version = fields.String()


@blp.route("")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema)
    def get(self):
        """Readiness (public, no key needed): the database answers and its schema is current;
        a 503 means route no traffic here"""
        report = health.check(get_database())
        return report, (200 if report["status"] == "ok" else 503)


class LivenessSchema(Schema):
    status = fields.String(metadata={"enum": ["ok"]})


@blp.route("/live")
class Liveness(MethodView):
    @blp.response(200, LivenessSchema)
    def get(self):
        """The process answers (public; touches no database): a failure means restart it"""
        return {"status": "ok"}
