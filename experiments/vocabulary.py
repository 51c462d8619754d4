"""The words of the domain: the values an experiment's fields take, the reserved segment and
arm names, and the two questions every service asks of an experiment (which metric is the
primary one, which variant is the control). Nothing here reads or writes.
"""

ALLOCATIONS = ("fixed", "thompson")
STICKINESS = ("unit", "decision")
RULE_OPS = ("eq", "ne", "lt", "lte", "gt", "gte", "in")
METRIC_TYPES = ("binary", "continuous")
METRIC_ROLES = ("primary", "secondary", "guardrail")
STATUSES = ("draft", "running", "paused", "concluded")

ALL_SEGMENT = "all"
OTHER_SEGMENT = "other"
RESERVED_SEGMENTS = (ALL_SEGMENT, OTHER_SEGMENT)
SUPPRESSED_METRIC = "suppressed"
# The arm that holdout units are counted under; not a valid variant key, so it never collides.
HOLDOUT_ARM = "(holdout)"
# `"prior"`: the default weak prior, or the registry's pooled evidence ("learnings").
PRIORS = ("default", "learnings")


def primary_metric(experiment):
    """The experiment's primary metric (a spec has exactly one)."""
    return next(m for m in experiment.metrics if m.role == "primary")


def control_index(experiment) -> int:
    """The control's position among the experiment's variants."""
    return [v.key for v in experiment.variants].index(experiment.control)
