"""The results answer, as documented in OpenAPI (the service builds it; these describe it)."""

from marshmallow import Schema, fields

from analysis.stopping import GUARDRAIL_VERDICTS, RECOMMENDATION_CODES
from analysis.summary import ARM_NOTES
from api.blueprint import QuerySchema
from api.rules import Slug
from experiments.results import LEARNED_PRIOR, SAMPLE_RATIO_VERDICTS, SEGMENT_NOTES


def note_codes_field(notes: dict[str, str]) -> fields.List:
    """The codes of `notes`, each beside its sentence, documented as their enum."""
    listed = "; ".join(f"`{code}`: {text}" for code, text in notes.items())
    return fields.List(
        fields.String(metadata={"enum": list(notes)}),
        metadata={"description": f"A stable code per note, in the same order: {listed}"},
    )


class IntervalSchema(Schema):
    mean = fields.Float(allow_none=True)
    ci = fields.List(fields.Float(), metadata={"description": "95% credible interval"})


class LiftSchema(Schema):
    # Not an IntervalSchema: its fields in the order the answer gives them (mean, median, ci).
    mean = fields.Float(
        allow_none=True,
        metadata={
            "description": "E[this rate / control's rate] − 1: pulled up by the ratio's right "
            "tail when the control has few conversions (2/200 against 3/200 reads +99%); "
            "null when it has no finite mean (the control's posterior alpha ≤ 1)"
        },
    )
    median = fields.Float(
        allow_none=True,
        metadata={
            "description": "The posterior median of the lift: the figure to quote (+37% there)"
        },
    )
    ci = fields.List(fields.Float(), metadata={"description": "95% credible interval"})


class VariantResultSchema(Schema):
    variant = fields.String(
        allow_none=True, metadata={"description": "The variant's key; null on the holdout row"}
    )
    holdout = fields.Boolean()
    units = fields.Integer(metadata={"description": "Assigned units (intention to treat)"})
    conversions = fields.Integer(
        metadata={"description": "Units that converted (continuous: that reported a value)"}
    )
    rate = fields.Nested(
        IntervalSchema,
        metadata={"description": "Conversion rate (continuous: mean value per unit)"},
    )
    lift = fields.Nested(
        LiftSchema,
        allow_none=True,
        metadata={"description": "Relative lift over control; null on the control's row"},
    )
    prob_beat_control = fields.Float(allow_none=True)
    prob_best = fields.Float(allow_none=True)
    expected_loss = fields.Float(
        allow_none=True, metadata={"description": "E[best − this], in the metric's units"}
    )
    notes = fields.List(fields.String())
    note_codes = note_codes_field(ARM_NOTES)


class SegmentResultSchema(Schema):
    segment = fields.String()
    units = fields.Integer()
    stratified = fields.Boolean(
        metadata={"description": "Compared within allocation periods (bandit weights changed)"}
    )
    notes = fields.List(fields.String())
    note_codes = note_codes_field(SEGMENT_NOTES)
    variants = fields.List(fields.Nested(VariantResultSchema))


class SampleRatioSchema(Schema):
    p_value = fields.Float(allow_none=True)
    flag = fields.Boolean(metadata={"description": "p < 0.001"})
    observed = fields.Dict(keys=fields.String(), values=fields.Integer())
    expected = fields.Dict(keys=fields.String(), values=fields.Float(), allow_none=True)
    code = fields.String(
        metadata={
            "enum": list(SAMPLE_RATIO_VERDICTS),
            "description": "The verdict: the units match the weights' shares, they do not "
            "(`flag`), or there are no units to check yet",
        }
    )


class GuardrailResultSchema(Schema):
    metric = fields.String()
    variant = fields.String()
    margin = fields.Float()
    prob_worse = fields.Float(
        allow_none=True,
        metadata={"description": "P(worse than control by more than the margin), now"},
    )
    p_value = fields.Float(
        allow_none=True,
        metadata={
            "description": "Always-valid p-value of 'no worse than control by more than the "
            "margin': a harmless variant ever gets to 0.05 with probability at most 5%, "
            "however often the results are read"
        },
    )
    flag = fields.Boolean(metadata={"description": "Tripped: p_value ≤ 0.05"})
    conclusive = fields.Boolean(
        metadata={"description": "p_value ≤ 0.001: a bandit switches the variant off"}
    )
    code = fields.String(
        metadata={
            "enum": list(GUARDRAIL_VERDICTS),
            "description": "The verdict: within the margin; tripped (`flag`, a bandit holds "
            "the variant at its floor); harm conclusive (`conclusive`, a bandit switches it "
            "off); or no evidence yet (no p-value)",
        }
    )


class RecommendationSchema(Schema):
    action = fields.String(metadata={"enum": ["continue", "conclude", "stop"]})
    code = fields.String(
        metadata={
            "enum": list(RECOMMENDATION_CODES),
            "description": "The reason, as a stable name",
        }
    )
    reason = fields.String()
    variant = fields.String(
        allow_none=True, metadata={"description": "The leader (conclude, continue) or the harm"}
    )
    prob_wrong_choice = fields.Float(
        allow_none=True, metadata={"description": "P(the leader is not the best variant)"}
    )
    expected_loss = fields.Float(
        allow_none=True, metadata={"description": "What choosing the leader risks, E[best − it]"}
    )
    relative_expected_loss = fields.Float(
        allow_none=True, metadata={"description": "expected_loss as a share of the control's mean"}
    )
    threshold_of_caring = fields.Float(
        allow_none=True,
        metadata={
            "description": "In the metric's units (from the relative one: at the control's mean)"
        },
    )
    relative_threshold_of_caring = fields.Float(
        allow_none=True, metadata={"description": "Null when the experiment set an absolute one"}
    )


class ResultsSchema(Schema):
    experiment = fields.String()
    status = fields.String()
    metric = fields.String()
    method = fields.String(metadata={"enum": ["beta-binomial", "normal"]})
    prior = fields.Dict(
        metadata={
            "description": "The prior the posteriors start from; a learned prior's `note` "
            f"comes with `note_code` `{LEARNED_PRIOR}`"
        }
    )
    srm = fields.Nested(SampleRatioSchema)
    segments = fields.List(fields.Nested(SegmentResultSchema))
    guardrails = fields.List(fields.Nested(GuardrailResultSchema))
    recommendation = fields.Nested(RecommendationSchema)


class ResultsQuerySchema(QuerySchema):
    metric = fields.String(validate=Slug, metadata={"description": "Default: the primary metric"})
    segment = fields.String(
        validate=Slug, metadata={"description": "One segment (with `all`); default: every one"}
    )
