"""/v1/experiments: create, list, read, and the lifecycle actions."""

from flask.views import MethodView

from api.auth import requires, simulated_now
from api.blueprint import Blueprint, page_window
from api.db import get_database, get_session, get_snapshot_cache
from api.experiments.schemas import (
    ConcludeSchema,
    ExperimentInSchema,
    ExperimentQuerySchema,
    ExperimentSchema,
    NoFieldsSchema,
    PeriodSchema,
    ReweightSchema,
)
from experiments import workflows
from experiments.allocation import reweight
from experiments.spec import ExperimentSpec
from experiments.storage import repository

blp = Blueprint(
    "experiments",
    __name__,
    url_prefix="/v1/experiments",
    description="Experiments: what is tested, on whom, and where each one is in its lifecycle.",
)


def action(body_schema, refused: str, answer=ExperimentSchema):
    """An action on one experiment: a manager's, with an optional body (no body is no
    fields), answering 200 with `answer` (the experiment as the action left it), or 409 when
    the experiment's state does not allow it (`refused` says when)."""

    def decorate(post):
        post = blp.alt_response(409, description=f"{refused}; nothing changed.")(post)
        post = blp.response(200, answer)(post)
        post = blp.arguments(body_schema, required=False)(post)
        return requires("manage")(post)

    return decorate


@blp.route("")
class Experiments(MethodView):
    @requires("read")
    @blp.arguments(ExperimentQuerySchema(), location="query")
    @blp.response(200, ExperimentSchema(many=True))
    @blp.paginate(page_size=100, max_page_size=1000)
    def get(self, query, pagination_parameters):
        """List experiments, newest first, optionally by status"""
        offset, limit = page_window(pagination_parameters)
        items, total = repository.list_experiments(
            session=get_session(),
            status=query.get("status"),
            offset=offset,
            limit=limit,
        )
        pagination_parameters.item_count = total
        return items

    @requires("manage")
    @blp.arguments(ExperimentInSchema())
    @blp.response(201, ExperimentSchema)
    @blp.alt_response(409, description="An experiment with this key already exists.")
    def post(self, body):
        """Create an experiment, as a draft (with `"prior": "learnings"`, its prior is the
        registry's evidence as it stands now)"""
        return workflows.create(session=get_session(), spec=ExperimentSpec.from_dict(body))


@blp.route("/<key:key>")
class ExperimentByKey(MethodView):
    @requires("read")
    @blp.response(200, ExperimentSchema)
    def get(self, key):
        """Get one experiment"""
        return repository.get_experiment(session=get_session(), key=key)


@blp.route("/<key:key>/start")
class StartExperiment(MethodView):
    @action(NoFieldsSchema(), refused="Neither a draft nor paused")
    def post(self, _body, key):
        """Start a draft experiment, or resume a paused one (409 otherwise)"""
        return workflows.start(session=get_session(), cache=get_snapshot_cache(), key=key)


@blp.route("/<key:key>/pause")
class PauseExperiment(MethodView):
    @action(NoFieldsSchema(), refused="Not running")
    def post(self, _body, key):
        """Pause a running experiment: assignments answer 409 until it is resumed"""
        return workflows.pause(session=get_session(), cache=get_snapshot_cache(), key=key)


@blp.route("/<key:key>/conclude")
class ConcludeExperiment(MethodView):
    @action(ConcludeSchema(), refused="Neither running nor paused")
    def post(self, body, key):
        """Conclude a running or paused experiment (every unit gets the winner from now on) and
        publish its learnings"""
        return workflows.conclude(
            session=get_session(), cache=get_snapshot_cache(), key=key, winner=body.get("winner")
        )


@blp.route("/<key:key>/reweight")
class ReweightExperiment(MethodView):
    @action(
        ReweightSchema(),
        refused="Not a running Thompson-sampling experiment, too few units per arm, or a `now` "
        "before the previous reweight",
        answer=PeriodSchema,
    )
    def post(self, body, key):
        """Reweight a Thompson-sampling experiment now: opens its next allocation period"""
        return reweight.reweight(
            database=get_database(), cache=get_snapshot_cache(), key=key, now=simulated_now(body)
        )
