"""PyMC analysis jobs: the request and the job as answered."""

from marshmallow import Schema, fields, validate

from api.rules import Slug
from experiments.analysis_jobs import METHODS


class AnalysisInSchema(Schema):
    method = fields.String(
        required=True,
        validate=validate.OneOf(METHODS, error="Must be one of: {choices}."),
        metadata={"description": "hierarchical (segments partially pooled) or factorial"},
    )
    metric = fields.String(
        validate=Slug, metadata={"description": "A binary metric; default: the primary one"}
    )


class AnalysisSchema(Schema):
    id = fields.Integer()
    experiment = fields.String()
    method = fields.String()
    metric = fields.String()
    status = fields.String(metadata={"enum": ["queued", "running", "succeeded", "failed"]})
    progress = fields.Float(metadata={"description": "0 to 1"})
    stage = fields.String(metadata={"description": "What the job is doing now"})
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    result = fields.Dict(
        allow_none=True,
        metadata={"description": "Per segment (and `all`) posteriors, with diagnostics"},
    )
    error = fields.String(allow_none=True)
