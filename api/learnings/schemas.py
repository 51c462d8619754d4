"""The learnings registry's shapes: a learning, a hand-written one, the query, the evidence."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.blueprint import QuerySchema
from api.rules import Identifier, Moment, Number, Slug, identifier, text
from experiments import bounds
from experiments.learnings.record import (
    JOB_NOT_CONVERGED,
    JOB_POOLED_OVER_UNEVEN_ALLOCATION,
    NOT_A_DISCOVERY,
    NOTES,
    OWN_DATA,
)
from experiments.learnings.search import SORTS

VERDICTS = ("win", "loss", "flat", "inconclusive")
# A relative lift of a million-fold: beyond it a number is a typo, not a finding.
MAX_LIFT = 1e6


def _object(method: str, description: str) -> fields.Method:
    """A field the schema's `method` dumps: an object, or null where there is none."""
    return fields.Method(method, metadata={"type": ["object", "null"], "description": description})


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
    lift = _object(
        "dump_lift",
        "mean, median (the figure the summary quotes; null if hand-written) and 95% interval "
        "[low, high] of the relative lift",
    )
    log_lift = _object(
        "dump_log_lift", "Posterior mean and sd of log(p_level / p_baseline): what evidence pools"
    )
    prob_better = fields.Float(allow_none=True)
    units = fields.Integer(allow_none=True)
    method = fields.String(allow_none=True)
    discovery = _object(
        "dump_discovery",
        "Published ones: the always-valid p-value of no effect, the publication's number of "
        "comparisons, and the false-discovery rate its wins and losses were chosen at (the "
        "expected share of false ones among them is at most it)",
    )
    verdict = fields.String(
        metadata={
            "enum": list(VERDICTS),
            "description": "A code: flat (the 95% interval of the lift within ±the flat "
            "margin), win (else a discovery with P(better) at least the win probability), loss "
            "(a discovery with P(better) at most 1 − it), inconclusive (none of these; "
            "hand-written ones say their own)",
        }
    )
    summary = fields.String()
    hypothesis = fields.String()
    notes = fields.String(
        metadata={
            "description": "Published ones: one sentence per line, each with its code at the "
            "same position in note_codes; hand-written ones: a person's words"
        }
    )
    note_codes = fields.List(
        fields.String(metadata={"enum": list(NOTES)}),
        metadata={
            "description": "One stable code per line of notes, in order, to switch on "
            f"(hand-written learnings have none): {OWN_DATA}, the experiment started from the "
            f"registry's prior, so this is read from its own data; {JOB_NOT_CONVERGED}, the "
            "latest PyMC job's sampler did not converge, so these are the conjugate results; "
            f"{JOB_POOLED_OVER_UNEVEN_ALLOCATION}, the PyMC job pooled counts over allocation "
            "periods a bandit weighted differently, so these are the conjugate results, "
            f"within periods; {NOT_A_DISCOVERY}, P(better) passed the win probability but the "
            "comparison was not a discovery among the publication's, so it is inconclusive"
        },
    )
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


class LearningQuerySchema(QuerySchema):
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


class EvidenceQuerySchema(QuerySchema):
    segment = identifier(64, load_default="all")
    metric = identifier(64, required=True)
    factor = identifier(64, required=True)
    level = identifier(200, required=True)


class EvidenceLiftSchema(Schema):
    mean = fields.Float(metadata={"description": "The relative lift's mean"})
    ci = fields.List(fields.Float(), metadata={"description": "Its 95% interval [low, high]"})


class EvidenceLogLiftSchema(Schema):
    mean = fields.Float(metadata={"description": "θ = log(p_level / p_baseline): its mean"})
    sd = fields.Float(metadata={"description": "and its sd (standard error)"})


class EvidenceStudySchema(Schema):
    experiment = fields.String(allow_none=True)
    lift = fields.Nested(EvidenceLiftSchema)
    log_lift = fields.Nested(EvidenceLogLiftSchema)
    units = fields.Integer(allow_none=True)
    verdict = fields.String(metadata={"enum": list(VERDICTS)})
    weight = fields.Float(metadata={"description": "Its share of the pooled estimate"})


class PooledSchema(Schema):
    lift = fields.Nested(EvidenceLiftSchema)
    log_lift = fields.Nested(EvidenceLogLiftSchema)
    experiments = fields.Integer(metadata={"description": "How many learnings were pooled"})
    units = fields.Integer()
    prob_better = fields.Float(metadata={"description": "P(θ > 0)"})


class SpreadSchema(Schema):
    tau = fields.Float(metadata={"description": "Between-experiment sd of θ"})
    i_squared = fields.Float(metadata={"description": "Share of the variation that is real"})
    q = fields.Float(metadata={"description": "Cochran's Q"})


class EvidenceSchema(Schema):
    segment = fields.String()
    metric = fields.String()
    factor = fields.String()
    level = fields.String()
    experiments = fields.List(
        fields.Nested(EvidenceStudySchema),
        metadata={"description": "The published learnings pooled, one per experiment"},
    )
    pooled = fields.Nested(PooledSchema, allow_none=True)
    spread = fields.Nested(SpreadSchema, allow_none=True)
    method = fields.String()
    note = fields.String(metadata={"description": "Why there is nothing pooled, if there is not"})
