"""/metrics: Prometheus's text format, public like /health (see the README's "Observing")."""

from flask import Response
from flask.views import MethodView

from api.blueprint import Blueprint
from api.db import get_database
from experiments.analysis_jobs import JobsCollector
from experiments.telemetry import exposition

blp = Blueprint("metrics", __name__, url_prefix="/metrics", description="Prometheus metrics.")


@blp.route("")
class Metrics(MethodView):
    @blp.response(
        200,
        {"type": "string"},
        content_type="text/plain",
        description="Prometheus text exposition format 0.0.4 (public, no key needed).",
    )
    def get(self):
        """Metrics for Prometheus (public, no key needed)"""
        text, content_type = exposition([JobsCollector(get_database())])
        return Response(text, content_type=content_type)
