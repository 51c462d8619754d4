"""The learnings registry's shapes: a learning, a hand-written one, the query, the evidence."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.rules import Identifier, Moment, Number, Slug, identifier, text
from experiments import bounds
from experiments.learnings import SORTS

VERDICTS = ("win", "loss", "flat", "inconclusive")
# A relative lift of a million-fold: beyond it a number is a typo, not a finding.
MAX_LIFT = 1e6


class LearningSchema(Schema):
    id = fields.Integer()
    source = fields.String(metadata={"enum": ["published", "manual"]})
    experiment = fields.String(attribute="experiment_key", allow_none=True)
    metric = fields.String(allow_none=True)
    segment = fields.String(allow_none=True)
    factor = fields.String(
        allow_none=True,
        metadata={"description": "A factor (timing, tone, channel…), or 'variant'"},
    )
    level = fields.String(allow_none=True)
    baseline_level = fields.String(allow_none=True)
    channel = fields.String(allow_none=True)
    lift = fields.Method(
        "dump_lift",
        metadata={
            "type": ["object", "null"],
            "description": "mean, median (the figure the summary quotes; null if hand-written) "
            "and 95% interval [low, high] of the relative lift",
        },
    )
    log_lift = fields.Method(
        "dump_log_lift",
        metadata={
            "type": ["object", "null"],
            "description": "Posterior mean and sd of log(p_level / p_baseline): what evidence "
            "pools",
        },
    )
    prob_better = fields.Float(allow_none=True)
    units = fields.Integer(allow_none=True)
    method = fields.String(allow_none=True)
    discovery = fields.Method(
        "dump_discovery",
        metadata={
            "type": "object",
            "description": "Published ones: the always-valid p-value of no effect, the "
            "publication's number of comparisons, and the false-discovery rate its wins and "
            "losses were chosen at (the expected share of false ones among them is at most it)",
        },
    )
    verdict = fields.String(metadata={"enum": list(VERDICTS)})
    summary = fields.String()
    hypothesis = fields.String()
    notes = fields.String()
    tags = fields.List(fields.String())
    links = fields.List(fields.String())
    created_at = fields.DateTime()
    updated_at = fields.DateTime()

    def dump_lift(self, learning):
        if learning.lift_mean is None and learning.lift_low is None:
            return None
        return {
            "mean": learning.lift_mean,
            "median": learning.lift_median,
            "ci": [learning.lift_low, learning.lift_high],
        }

    def dump_log_lift(self, learning):
        if learning.log_lift_mean is None:
            return None
        return {"mean": learning.log_lift_mean, "sd": learning.log_lift_sd}

    def dump_discovery(self, learning):
        if learning.false_discovery_rate is None:
            return None
        return {
            "always_valid_p": learning.always_valid_p,
            "comparisons": learning.comparisons,
            "false_discovery_rate": learning.false_discovery_rate,
        }


class PublishSchema(Schema):
    win_probability = Number(
        validate=validate.Range(0.5, 1, min_inclusive=False, max_inclusive=False),
        metadata={"description": "P(better) for a win (default 0.95; a loss: 1 − this)"},
    )
    flat_margin = Number(
        validate=validate.Range(0, 1, min_inclusive=False, max_inclusive=False),
        metadata={"description": "A 95% interval within ±this is flat (default 0.02)"},
    )
    false_discovery_rate = Number(
        validate=validate.Range(0, 1, min_inclusive=False, max_inclusive=False),
        metadata={
            "description": "Wins and losses are the discoveries of all the publication's "
            "comparisons at this rate, valid under daily looks (default 0.05)"
        },
    )
    tags = fields.List(
        identifier(64),
        validate=validate.Length(max=20),
        metadata={"description": "Added to the tags earlier publications gave (none is dropped)"},
    )


class LiftInSchema(Schema):
    mean = Number(required=True, validate=validate.Range(-1, MAX_LIFT, min_inclusive=False))
    ci = fields.List(
        Number(validate=validate.Range(-1, MAX_LIFT)), validate=validate.Length(equal=2)
    )

    @validates_schema
    def ordered(self, data, **kwargs):
        """A relative lift is above −100%, and its interval is [low, high] around the mean:
        one stored the wrong way round would be dropped silently from every evidence query."""
        if "ci" in data:
            low, high = data["ci"]
            if not -1 < low <= data["mean"] <= high:
                raise ValidationError(
                    "Give [low, high] with −1 < low ≤ mean ≤ high.", field_name="ci"
                )


class ManualLearningSchema(Schema):
    summary = text(2000, 1, required=True)
    experiment = fields.String(validate=Slug)
    metric = identifier(64)
    segment = identifier(64)
    factor = identifier(64)
    level = identifier(200)
    baseline_level = identifier(200)
    channel = identifier(200)
    lift = fields.Nested(LiftInSchema)
    prob_better = Number(validate=validate.Range(0, 1))
    units = fields.Integer(strict=True, validate=validate.Range(0, bounds.MAX_INTEGER))
    verdict = fields.String(load_default="inconclusive", validate=validate.OneOf(VERDICTS))
    hypothesis = text(5000)
    notes = text(20000)
    tags = fields.List(identifier(64), validate=validate.Length(max=20))
    links = fields.List(
        fields.Url(validate=[validate.Length(max=2000), Identifier(2000)]),
        validate=validate.Length(max=20),
    )


class LearningQuerySchema(Schema):
    segment = identifier(64)
    metric = identifier(64)
    factor = identifier(64)
    level = identifier(200)
    channel = identifier(200)
    experiment = identifier(64)
    verdict = fields.String(validate=validate.OneOf(VERDICTS))
    source = fields.String(validate=validate.OneOf(["published", "manual"]))
    tag = fields.List(
        identifier(64),
        validate=validate.Length(max=20),
        metadata={"description": "Every tag given (repeat it)"},
    )
    since = Moment()
    until = Moment()
    q = identifier(200, metadata={"description": "Text search over summary, hypothesis and notes"})
    sort = fields.String(
        load_default="-date",
        validate=validate.OneOf(SORTS),
        metadata={"description": "date or lift; '-' first for descending"},
    )


class EvidenceQuerySchema(Schema):
    segment = identifier(64, load_default="all")
    metric = identifier(64, required=True)
    factor = identifier(64, required=True)
    level = identifier(200, required=True)


class EvidenceSchema(Schema):
    segment = fields.String()
    metric = fields.String()
    factor = fields.String()
    level = fields.String()
    method = fields.String()
    experiments = fields.List(fields.Dict())
    pooled = fields.Dict(allow_none=True)
    spread = fields.Dict(allow_none=True)
    note = fields.String()
