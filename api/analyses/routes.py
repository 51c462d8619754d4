"""PyMC analyses: queue one for an experiment, then follow it by id."""

from flask.views import MethodView

from api.analyses.schemas import AnalysisInSchema, AnalysisSchema
from api.auth import requires
from api.blueprint import Blueprint
from api.db import get_session
from experiments.analysis_jobs import get_job, submit

blp = Blueprint(
    "analyses",
    __name__,
    url_prefix="/v1",
    description="PyMC analyses (hierarchical, factorial), run as jobs by the analysis worker.",
)


def _answer(job, key: str) -> dict:
    return {
        **{name: getattr(job, name) for name in AnalysisSchema().fields if hasattr(job, name)},
        "experiment": key,
    }


@blp.route("/experiments/<key:key>/analyses")
class ExperimentAnalyses(MethodView):
    @requires("manage")
    @blp.arguments(AnalysisInSchema())
    @blp.response(202, AnalysisSchema)
    def post(self, body, key):
        """Queue a PyMC analysis; follow it at GET /v1/analyses/{id}"""
        job = submit(
            session=get_session(), key=key, method=body["method"], metric=body.get("metric")
        )
        return _answer(job, key)


@blp.route("/analyses/<id:job_id>")
class Analysis(MethodView):
    @requires("read")
    @blp.response(200, AnalysisSchema)
    def get(self, job_id):
        """An analysis: status, progress, and its result or error once finished"""
        job, key = get_job(session=get_session(), job_id=job_id)
        return _answer(job, key)
