"""The learnings registry's shapes: a learning, a hand-written one, the query, the evidence."""

from datetime import UTC

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from experiments.learnings import SORTS

VERDICTS = ("win", "loss", "flat", "inconclusive")


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
    lift = fields.Method("dump_lift", metadata={"type": "object"})
    prob_better = fields.Float(allow_none=True)
    units = fields.Integer(allow_none=True)
    method = fields.String(allow_none=True)
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
        return {"mean": learning.lift_mean, "ci": [learning.lift_low, learning.lift_high]}


class PublishSchema(Schema):
    win_probability = fields.Float(
        validate=validate.Range(0.5, 1, min_inclusive=False, max_inclusive=False),
        metadata={"description": "P(better) for a win (default 0.95; a loss: 1 − this)"},
    )
    flat_margin = fields.Float(
        validate=validate.Range(0, 1, min_inclusive=False, max_inclusive=False),
        metadata={"description": "A 95% interval within ±this is flat (default 0.02)"},
    )
    tags = fields.List(
        fields.String(validate=validate.Length(1, 64)),
        validate=validate.Length(max=20),
        metadata={"description": "Added to the tags earlier publications gave (none is dropped)"},
    )


class LiftInSchema(Schema):
    mean = fields.Float(required=True, validate=validate.Range(-1, min_inclusive=False))
    ci = fields.List(fields.Float(), validate=validate.Length(equal=2))

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
    summary = fields.String(required=True, validate=validate.Length(1, 2000))
    experiment = fields.String(validate=validate.Length(1, 64))
    metric = fields.String(validate=validate.Length(1, 64))
    segment = fields.String(validate=validate.Length(1, 64))
    factor = fields.String(validate=validate.Length(1, 64))
    level = fields.String(validate=validate.Length(1, 200))
    baseline_level = fields.String(validate=validate.Length(1, 200))
    channel = fields.String(validate=validate.Length(1, 200))
    lift = fields.Nested(LiftInSchema)
    prob_better = fields.Float(validate=validate.Range(0, 1))
    units = fields.Integer(validate=validate.Range(0))
    verdict = fields.String(load_default="inconclusive", validate=validate.OneOf(VERDICTS))
    hypothesis = fields.String(validate=validate.Length(max=5000))
    notes = fields.String(validate=validate.Length(max=20000))
    tags = fields.List(
        fields.String(validate=validate.Length(1, 64)), validate=validate.Length(max=20)
    )
    links = fields.List(fields.Url(), validate=validate.Length(max=20))


class LearningQuerySchema(Schema):
    segment = fields.String()
    metric = fields.String()
    factor = fields.String()
    level = fields.String()
    channel = fields.String()
    experiment = fields.String()
    verdict = fields.String(validate=validate.OneOf(VERDICTS))
    source = fields.String(validate=validate.OneOf(["published", "manual"]))
    tag = fields.List(fields.String(), metadata={"description": "Every tag given (repeat it)"})
    since = fields.AwareDateTime(default_timezone=UTC)
    until = fields.AwareDateTime(default_timezone=UTC)
    q = fields.String(
        validate=validate.Length(1, 200),
        metadata={"description": "Text search over summary, hypothesis and notes"},
    )
    sort = fields.String(
        load_default="-date",
        validate=validate.OneOf(SORTS),
        metadata={"description": "date or lift; '-' first for descending"},
    )


class EvidenceQuerySchema(Schema):
    segment = fields.String(load_default="all")
    metric = fields.String(required=True)
    factor = fields.String(required=True)
    level = fields.String(required=True)


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
