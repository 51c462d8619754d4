"""The learnings registry: publish from an experiment, write by hand, search, pool evidence."""

from flask.views import MethodView

from analysis.evidence import Thresholds
from api.auth import requires
from api.blueprint import Blueprint, page_window
from api.db import get_session
from api.learnings.schemas import (
    EvidenceQuerySchema,
    EvidenceSchema,
    LearningQuerySchema,
    LearningSchema,
    ManualLearningSchema,
    PublishSchema,
)
from experiments.learnings import evidence, publish, record
from experiments.learnings.search import Filters, search

blp = Blueprint(
    "learnings",
    __name__,
    url_prefix="/v1",
    description="The learnings registry: what worked, for whom, and how sure we are.",
)


@blp.route("/experiments/<key:key>/learnings")
class PublishLearnings(MethodView):
    @requires("manage")
    @blp.arguments(PublishSchema(), required=False)
    @blp.response(201, LearningSchema(many=True))
    @blp.alt_response(409, description="Another publication of it ran at the same time; retry.")
    def post(self, body, key):
        """Publish the experiment's learnings from its latest results (replaces earlier ones)"""
        thresholds = Thresholds(
            **{
                k: body[k]
                for k in ("win_probability", "flat_margin", "false_discovery_rate")
                if k in body
            }
        )
        return publish.publish(
            session=get_session(), key=key, thresholds=thresholds, tags=body.get("tags", ())
        )


@blp.route("/learnings")
class Learnings(MethodView):
    @requires("read")
    @blp.arguments(LearningQuerySchema(), location="query")
    @blp.response(200, LearningSchema(many=True))
    @blp.paginate(page_size=50, max_page_size=500)
    def get(self, query, pagination_parameters):
        """Search the registry: filters, text search (q), sort by lift or date"""
        offset, limit = page_window(pagination_parameters)
        sort = query.pop("sort")
        tags = tuple(query.pop("tag", ()))
        items, total = search(
            session=get_session(),
            filters=Filters(tags=tags, **query),
            sort=sort,
            offset=offset,
            limit=limit,
        )
        pagination_parameters.item_count = total
        return items

    @requires("manage")
    @blp.arguments(ManualLearningSchema())
    @blp.response(201, LearningSchema)
    @blp.alt_response(404, description="The experiment it names does not exist.")
    def post(self, body):
        """Add a hand-written learning (research, an interview), with tags and links"""
        lift = body.pop("lift", None)
        if lift is not None:
            body["lift_mean"] = lift["mean"]
            if lift.get("ci"):
                body["lift_low"], body["lift_high"] = lift["ci"]
        return record.create_manual(session=get_session(), fields=body)


@blp.route("/learnings/evidence")
class Evidence(MethodView):
    @requires("read")
    @blp.arguments(EvidenceQuerySchema(), location="query")
    @blp.response(200, EvidenceSchema)
    def get(self, query):
        """The pooled effect of a factor level across experiments (random-effects meta-analysis)"""
        return evidence.evidence(session=get_session(), **query)


@blp.route("/learnings/<id:learning_id>")
class LearningById(MethodView):
    @requires("read")
    @blp.response(200, LearningSchema)
    def get(self, learning_id):
        """One learning"""
        return record.get_learning(session=get_session(), learning_id=learning_id)
