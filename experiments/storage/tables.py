"""Every Kairos table, in one module.

Times are timezone-aware UTC datetimes (SQLModel's UTCDateTime stores them as such on both
databases); the HTTP edge renders them as ISO 8601.
Experiment-scoped rows refer to their experiment by integer id and to variants, segments and
metrics by their keys, which are immutable once the experiment is created.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, Relationship, SQLModel

from experiments.clock import utcnow

JSONType = JSON().with_variant(JSONB(), "postgresql")


def json_field(default_factory=dict, nullable: bool = False) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSONType, nullable=nullable))


def _children(model: str) -> dict:
    """An experiment's ordered, always-loaded, owned children."""
    return {
        "order_by": f"{model}.position",
        "lazy": "selectin",
        "cascade": "all, delete-orphan",
    }


# An experiment: what is tested, how units are allocated, and where it is in its lifecycle.
class Experiment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    hypothesis: str = Field(default="")
    status: str = Field(default="draft", max_length=16, index=True)
    allocation: str = Field(default="fixed", max_length=16)
    stickiness: str = Field(default="unit", max_length=16)
    control: str = Field(max_length=200)
    winner: str | None = Field(default=None, max_length=200)
    # [[factor, [level, ...]], ...]: a list, because JSONB does not keep an object's key order.
    factors: list = json_field(default_factory=list)
    attribution_window_hours: float = Field(default=72.0)
    holdout: float = Field(default=0.0)
    holdout_seed: int = Field(default=0)
    quiet_hours_start: int | None = Field(default=None)
    quiet_hours_end: int | None = Field(default=None)
    # Where units that give no time zone are taken to be (send.local_hour, quiet hours).
    timezone: str = Field(default="UTC", max_length=64)
    update_every_seconds: int = Field(default=900)
    min_weight: float = Field(default=0.01)
    min_units_per_arm: int = Field(default=100)
    # Conclude once the leader's expected loss on the primary metric is below this share of the
    # control's mean, or below `threshold_of_caring` (in the metric's units) if that is set.
    relative_threshold_of_caring: float = Field(default=0.01)
    threshold_of_caring: float | None = Field(default=None)
    # "learnings": the bandit and the conjugate results start from `priors`, a snapshot of the
    # registry's pooled evidence taken at creation ({segment: {variant: [alpha, beta]}}).
    prior: str = Field(default="default", max_length=16)
    prior_units: float = Field(default=100.0)
    priors: dict | None = json_field(default_factory=lambda: None, nullable=True)
    current_period: int = Field(default=0)
    # When a Thompson experiment is next due for a scheduled reweight; claimed atomically.
    next_reweight_at: datetime | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = Field(default=None)
    concluded_at: datetime | None = Field(default=None)

    variants: list["Variant"] = Relationship(sa_relationship_kwargs=_children("Variant"))
    segments: list["Segment"] = Relationship(sa_relationship_kwargs=_children("Segment"))
    metrics: list["Metric"] = Relationship(sa_relationship_kwargs=_children("Metric"))


# One arm of an experiment: a message built from factor levels, with its payload and split weight.
class Variant(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("experiment_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE", index=True)
    key: str = Field(max_length=200)
    position: int
    factors: dict = json_field()
    payload: dict = json_field()
    weight: float


# An ordered rule on request attributes; the first segment whose rule matches a unit wins.
class Segment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("experiment_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE", index=True)
    key: str = Field(max_length=64)
    position: int
    rule: dict = json_field()


# An outcome an experiment measures: primary, secondary or guardrail; binary or continuous.
class Metric(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("experiment_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE", index=True)
    key: str = Field(max_length=64)
    position: int
    type: str = Field(max_length=16)
    role: str = Field(max_length=16)
    margin: float | None = Field(default=None)
    higher_is_better: bool = Field(default=True)


# A stretch of time with fixed allocation weights per segment and its own hash seed.
class AllocationPeriod(SQLModel, table=True):
    __tablename__ = "allocation_period"
    __table_args__ = (UniqueConstraint("experiment_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE", index=True)
    number: int
    seed: int
    weights: dict = json_field()
    started_at: datetime = Field(default_factory=utcnow)


# One decision for one unit: the variant it got (null in the holdout) and with what propensity.
class Assignment(SQLModel, table=True):
    __table_args__ = (
        # sticky_unit is the unit id under `unit` stickiness and NULL under `decision`, so that
        # the database itself guarantees one sticky answer per unit (NULLs never collide).
        UniqueConstraint("experiment_id", "sticky_unit"),
        # Decision assignments by unit; sticky ones are found through the constraint above
        # (indexing them twice doubled the index pages each insert writes).
        Index(
            "ix_assignment_decision_unit",
            "experiment_id",
            "unit_id",
            sqlite_where=text("sticky_unit IS NULL"),
            postgresql_where=text("sticky_unit IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE")
    unit_id: str = Field(max_length=200)
    sticky_unit: str | None = Field(default=None, max_length=200)
    variant: str | None = Field(default=None, max_length=200)
    segment: str = Field(max_length=64)
    period: int
    propensity: float
    holdout: bool = Field(default=False)
    assigned_at: datetime = Field(default_factory=utcnow)
    send_at: datetime | None = Field(default=None)


# A reported event, stored once per event_id; unattributed events are kept with their reason.
class Outcome(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200, unique=True)
    experiment_id: int | None = Field(
        default=None, foreign_key="experiment.id", ondelete="CASCADE", index=True
    )
    assignment_id: str | None = Field(default=None, max_length=32)
    unit_id: str | None = Field(default=None, max_length=200)
    metric: str = Field(max_length=64)
    value: float = Field(default=1.0)
    occurred_at: datetime = Field(default_factory=utcnow)
    received_at: datetime = Field(default_factory=utcnow)
    attributed: bool = Field(default=True)
    reason: str | None = Field(default=None, max_length=32)


# Sufficient statistics of one metric for one arm (experiment, period, segment, variant).
class ArmStats(SQLModel, table=True):
    __tablename__ = "arm_stats"
    __table_args__ = (UniqueConstraint("experiment_id", "period", "segment", "variant", "metric"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE")
    period: int
    segment: str = Field(max_length=64)
    variant: str = Field(max_length=200)
    metric: str = Field(max_length=64)
    units: int = Field(default=0)
    conversions: int = Field(default=0)
    sum: float = Field(default=0.0)
    sum_squares: float = Field(default=0.0)
    # Σ of the units' assignment times (Unix seconds): their mean gives the arm's age in this
    # period, which delay-aware reweights need, without reading assignments.
    assigned_seconds: float = Field(default=0.0)


# One assignment's running total of one metric, from its attributed outcomes: it makes a binary
# metric count a unit once however many events it sends, and a continuous one sum a unit's
# values; `first_at - assigned_at` is the unit's conversion delay (for delay-aware bandits).
class UnitMetric(SQLModel, table=True):
    __tablename__ = "unit_metric"
    __table_args__ = (UniqueConstraint("assignment_id", "metric"),)

    id: int | None = Field(default=None, primary_key=True)
    assignment_id: str = Field(foreign_key="assignment.id", ondelete="CASCADE", max_length=32)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE", index=True)
    metric: str = Field(max_length=64)
    total: float = Field(default=0.0)
    events: int = Field(default=0)
    first_at: datetime
    delay_seconds: float = Field(default=0.0)


# A queued or finished PyMC analysis, claimed by one worker at a time.
class AnalysisJob(SQLModel, table=True):
    __tablename__ = "analysis_job"

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", ondelete="CASCADE", index=True)
    method: str = Field(max_length=32)
    metric: str = Field(max_length=64)
    status: str = Field(default="queued", max_length=16, index=True)
    progress: float = Field(default=0.0)
    # What a running job is doing ("sampling"), and when its worker last said so: a job whose
    # heartbeat stops (its worker died) is queued again.
    stage: str = Field(default="", max_length=64)
    heartbeat_at: datetime | None = Field(default=None)
    result: dict | None = json_field(default_factory=lambda: None, nullable=True)
    error: str | None = Field(default=None)
    worker: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = Field(default=None)
    finished_at: datetime | None = Field(default=None)


# A structured learning in the shared registry: what lifted what, for whom, and how sure we are.
# `published` ones come from an experiment's results (one per experiment, segment, metric,
# factor and level: republishing replaces them); `manual` ones are written by hand.
class Learning(SQLModel, table=True):
    __table_args__ = (
        Index(
            "ux_learning_published",
            "experiment_id",
            "segment",
            "metric",
            "factor",
            "level",
            unique=True,
            sqlite_where=text("source = 'published'"),
            postgresql_where=text("source = 'published'"),
        ),
        Index("ix_learning_metric_segment", "metric", "segment"),
        Index("ix_learning_factor_level", "factor", "level"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(default="published", max_length=16)
    experiment_id: int | None = Field(
        default=None, foreign_key="experiment.id", ondelete="SET NULL", index=True
    )
    experiment_key: str | None = Field(default=None, max_length=64, index=True)
    metric: str | None = Field(default=None, max_length=64)
    segment: str | None = Field(default=None, max_length=64)
    factor: str | None = Field(default=None, max_length=64)
    level: str | None = Field(default=None, max_length=200)
    baseline_level: str | None = Field(default=None, max_length=200)
    lift_mean: float | None = Field(default=None)
    lift_low: float | None = Field(default=None)
    lift_high: float | None = Field(default=None)
    # The lift's posterior median, the figure a sentence quotes (the mean E[p1]·E[1/p0] − 1 is
    # pulled up by the ratio's right tail at small counts). None for hand-written learnings.
    lift_median: float | None = Field(default=None)
    prob_better: float | None = Field(default=None)
    units: int | None = Field(default=None)
    method: str | None = Field(default=None, max_length=32)
    verdict: str = Field(default="inconclusive", max_length=16)
    summary: str = Field(default="")
    hypothesis: str = Field(default="")
    notes: str = Field(default="")
    # Published ones: one stable code per line of notes, in order (experiments/learnings/record.py).
    note_codes: list = json_field(default_factory=list)
    # The channel the learning is about (a `channel` factor's level, or the variant's channel).
    channel: str | None = Field(default=None, max_length=200)
    # The baseline's rate and the units behind the level (for priors and weighting).
    baseline_rate: float | None = Field(default=None)
    level_units: int | None = Field(default=None)
    # θ = log(p_level / p_baseline): its posterior mean and sd, the scale evidence pools on.
    log_lift_mean: float | None = Field(default=None)
    log_lift_sd: float | None = Field(default=None)
    # Published ones: the always-valid p-value of "no effect", how many comparisons the
    # publication made, and the false-discovery rate its wins and losses were chosen at.
    always_valid_p: float | None = Field(default=None)
    comparisons: int | None = Field(default=None)
    false_discovery_rate: float | None = Field(default=None)
    tags: list = json_field(default_factory=list)
    links: list = json_field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# An API key: a name, its scopes and the SHA-256 of its token (the token itself is never stored).
class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    scopes: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = Field(default=None)


# A signed-in page session: the /ui cookie carries a random id, stored here as its SHA-256
# beside the key it signed in with; signing out ends it, so a copy of the cookie is worthless.
class PageSession(SQLModel, table=True):
    __tablename__ = "page_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    key_id: int = Field(foreign_key="api_key.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = Field(default=None)
