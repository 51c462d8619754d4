"""The experiment body's shape: types, ranges and spellings, field by field.

Rules that tie fields together (weights summing to 1, the control existing, …) are the
domain's, checked by `experiments.spec.ExperimentSpec`.
"""

from marshmallow import Schema, fields, validate

from api.blueprint import QuerySchema
from api.rules import JsonObject, Moment, Number, Slug, VariantKey, identifier, text
from experiments import bounds, spec, vocabulary


def one_of(choices) -> validate.OneOf:
    return validate.OneOf(choices, error=f"Must be one of: {', '.join(choices)}.")


class RuleSchema(Schema):
    attribute = identifier(100, required=True)
    op = fields.String(required=True, validate=one_of(vocabulary.RULE_OPS))
    value = fields.Raw(
        required=True,
        allow_none=False,
        metadata={"description": "A string, number or boolean; for 'in', a list of them."},
    )


class SegmentInSchema(Schema):
    key = fields.String(required=True, validate=Slug)
    rule = fields.Nested(RuleSchema, required=True)


class VariantInSchema(Schema):
    key = fields.String(required=True, validate=VariantKey)
    factors = fields.Dict(
        keys=fields.String(validate=Slug),
        values=fields.String(validate=Slug),
        validate=validate.Length(max=8),
    )
    payload = JsonObject(
        max_bytes=bounds.MAX_PAYLOAD_BYTES,
        metadata={
            "description": "What to send, free-form JSON (at most "
            f"{bounds.MAX_JSON_DEPTH} levels, {bounds.MAX_PAYLOAD_BYTES // 1024} KiB); "
            '`send` may say when: {"delay_minutes": m} or {"local_hour": h, "local_minute": m}.'
        },
    )
    weight = Number(
        validate=validate.Range(min=0, max=1, min_inclusive=False, error="Must be in (0, 1]."),
        metadata={"description": "Share of units (fixed split) or initial share (Thompson)."},
    )


class MetricInSchema(Schema):
    key = fields.String(required=True, validate=Slug)
    type = fields.String(load_default="binary", validate=one_of(vocabulary.METRIC_TYPES))
    role = fields.String(load_default="secondary", validate=one_of(vocabulary.METRIC_ROLES))
    margin = Number(
        allow_none=True,
        validate=validate.Range(min=0, max=bounds.MAX_OUTCOME_VALUE),
        metadata={"description": "Guardrails only: the worsening tolerated, in metric units."},
    )
    higher_is_better = fields.Boolean(
        metadata={"description": "Default: true, except for guardrails."}
    )


class QuietHoursSchema(Schema):
    start = fields.Integer(required=True, strict=True, validate=validate.Range(0, 23))
    end = fields.Integer(required=True, strict=True, validate=validate.Range(0, 23))


class BanditSchema(Schema):
    update_every_seconds = fields.Integer(strict=True, validate=validate.Range(1, 7 * 24 * 3600))
    min_weight = Number(validate=validate.Range(0, 0.5))
    min_units_per_arm = fields.Integer(strict=True, validate=validate.Range(0, 1_000_000))


class ExperimentInSchema(Schema):
    key = fields.String(required=True, validate=Slug)
    name = text(200, 1)
    hypothesis = text(5000)
    allocation = fields.String(load_default="fixed", validate=one_of(vocabulary.ALLOCATIONS))
    stickiness = fields.String(load_default="unit", validate=one_of(vocabulary.STICKINESS))
    factors = fields.Dict(
        keys=fields.String(validate=Slug),
        values=fields.List(
            fields.String(validate=Slug), validate=validate.Length(1, spec.MAX_VARIANTS)
        ),
        validate=validate.Length(max=8),
        metadata={"description": "Factor name → its levels; alone, generates the full factorial."},
    )
    variants = fields.List(
        fields.Nested(VariantInSchema), validate=validate.Length(max=spec.MAX_VARIANTS)
    )
    control = fields.String(
        validate=VariantKey,
        metadata={
            "description": "The variant the others are compared with; default: the first "
            "(for generated factorials, the first level of every factor)."
        },
    )
    segments = fields.List(fields.Nested(SegmentInSchema), validate=validate.Length(max=100))
    metrics = fields.List(
        fields.Nested(MetricInSchema), required=True, validate=validate.Length(1, 50)
    )
    attribution_window_hours = Number(
        validate=validate.Range(
            0,
            spec.MAX_ATTRIBUTION_WINDOW_HOURS,
            min_inclusive=False,
            error=f"Must be more than 0 and at most {spec.MAX_ATTRIBUTION_WINDOW_HOURS}.",
        )
    )
    holdout = Number(validate=validate.Range(0, spec.MAX_HOLDOUT))
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    bandit = fields.Nested(BanditSchema, allow_none=True)
    prior = fields.String(
        validate=one_of(vocabulary.PRIORS),
        metadata={
            "description": "'learnings': start the bandit and the results from the registry's "
            "pooled evidence (default: Beta(1, 1))."
        },
    )
    prior_units = Number(
        validate=validate.Range(1, 1e6),
        metadata={"description": "What the learned prior is worth, in units per arm (100)."},
    )
    timezone = identifier(
        64,
        metadata={
            "description": "IANA time zone of units that give none: where a variant's "
            f"`send.local_hour` and the quiet hours are read (default {spec.DEFAULT_TIMEZONE})."
        },
    )
    relative_threshold_of_caring = Number(
        validate=validate.Range(0, 1, min_inclusive=False),
        metadata={
            "description": "Recommend concluding once the leader's expected loss on the primary "
            "metric is below this share of the control's mean (default "
            f"{spec.DEFAULT_RELATIVE_THRESHOLD_OF_CARING:g}: "
            f"{spec.DEFAULT_RELATIVE_THRESHOLD_OF_CARING:.0%})."
        },
    )
    threshold_of_caring = Number(
        validate=validate.Range(0, 1e12, min_inclusive=False),
        metadata={
            "description": "Instead of the relative threshold: an expected loss in the primary "
            "metric's units (0.001 is a tenth of a percentage point of a rate, which is 20% of "
            "a 0.5% rate). Not with relative_threshold_of_caring."
        },
    )


class VariantSchema(Schema):
    key = fields.String()
    factors = fields.Dict()
    payload = fields.Dict()
    weight = fields.Float()


class SegmentSchema(Schema):
    key = fields.String()
    rule = fields.Dict()


class MetricSchema(Schema):
    key = fields.String()
    type = fields.String()
    role = fields.String()
    margin = fields.Float(allow_none=True)
    higher_is_better = fields.Boolean()


class ExperimentSchema(Schema):
    key = fields.String()
    name = fields.String()
    hypothesis = fields.String()
    status = fields.String(metadata={"enum": list(vocabulary.STATUSES)})
    allocation = fields.String()
    stickiness = fields.String()
    control = fields.String()
    winner = fields.String(allow_none=True)
    factors = fields.Method("dump_factors", metadata={"type": "object"})
    variants = fields.Method("dump_variants", metadata={"type": "array"})
    segments = fields.List(fields.Nested(SegmentSchema))
    metrics = fields.List(fields.Nested(MetricSchema))
    attribution_window_hours = fields.Float()
    holdout = fields.Float()
    quiet_hours = fields.Method("dump_quiet_hours", metadata={"type": ["object", "null"]})
    bandit = fields.Method("dump_bandit", metadata={"type": ["object", "null"]})
    relative_threshold_of_caring = fields.Float()
    threshold_of_caring = fields.Float(
        allow_none=True, metadata={"description": "In the metric's units; null: relative"}
    )
    prior = fields.String()
    prior_units = fields.Float()
    timezone = fields.String()
    priors = fields.Dict(allow_none=True, metadata={"description": "segment → variant → [α, β]"})
    period = fields.Integer(attribute="current_period")
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    concluded_at = fields.DateTime(allow_none=True)

    def dump_factors(self, experiment):
        return {name: levels for name, levels in experiment.factors}

    def dump_variants(self, experiment):
        order = [name for name, _ in experiment.factors]
        return [
            {
                "key": v.key,
                "factors": {name: v.factors[name] for name in order if name in v.factors},
                "payload": v.payload,
                "weight": v.weight,
            }
            for v in experiment.variants
        ]

    def dump_quiet_hours(self, experiment):
        if experiment.quiet_hours_start is None:
            return None
        return {"start": experiment.quiet_hours_start, "end": experiment.quiet_hours_end}

    def dump_bandit(self, experiment):
        if experiment.allocation != "thompson":
            return None
        return {
            "update_every_seconds": experiment.update_every_seconds,
            "min_weight": experiment.min_weight,
            "min_units_per_arm": experiment.min_units_per_arm,
        }


class ExperimentQuerySchema(QuerySchema):
    status = fields.String(validate=one_of(vocabulary.STATUSES))


class NoFieldsSchema(Schema):
    """Start and pause take no fields: a body, if any, is `{}`."""


class ConcludeSchema(Schema):
    winner = fields.String(
        validate=VariantKey,
        metadata={"description": "The variant to serve from now on; default: the control."},
    )


class ReweightSchema(Schema):
    now = Moment(
        metadata={
            "description": "Simulated clock (ISO 8601); honoured for admin keys only. Not "
            "before the reweight that opened the current period (409): reweights happen in "
            "time order."
        }
    )


class PeriodSchema(Schema):
    period = fields.Integer(attribute="number")
    weights = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.Float()),
        metadata={"description": "segment → variant → weight"},
    )
    started_at = fields.AwareDateTime()
