"""Test factories: valid experiment bodies and stored experiments, overridable field by field."""

import copy

from sqlmodel import Session

from experiments.lifecycle import create_experiment
from experiments.spec import ExperimentSpec
from experiments.storage.tables import Experiment

ONBOARDING = {
    "key": "onboarding-nudge",
    "name": "Onboarding nudge",
    "hypothesis": "A friendly morning push activates newcomers more than an evening email.",
    "allocation": "fixed",
    "stickiness": "unit",
    "variants": [
        {
            "key": "morning-push",
            "factors": {"timing": "morning", "channel": "push"},
            "payload": {"template": "nudge_a", "send": {"local_hour": 9}},
            "weight": 0.5,
        },
        {
            "key": "evening-email",
            "factors": {"timing": "evening", "channel": "email"},
            "payload": {"template": "nudge_b", "send": {"local_hour": 19}},
            "weight": 0.5,
        },
    ],
    "control": "morning-push",
    "segments": [
        {"key": "newcomers", "rule": {"attribute": "days_since_signup", "op": "lt", "value": 14}}
    ],
    "metrics": [
        {"key": "activated", "type": "binary", "role": "primary"},
        {"key": "unsubscribed", "type": "binary", "role": "guardrail", "margin": 0.002},
    ],
    "attribution_window_hours": 72,
    "holdout": 0.05,
    "quiet_hours": {"start": 21, "end": 8},
}

FACTORIAL = {
    "key": "renewal-reminder",
    "name": "Renewal reminder",
    "allocation": "thompson",
    "factors": {
        "timing": ["morning", "evening"],
        "tone": ["friendly", "urgent"],
        "channel": ["email", "push"],
    },
    "control": "timing=morning,tone=friendly,channel=email",
    "metrics": [{"key": "renewed", "role": "primary"}],
    "bandit": {"update_every_seconds": 900, "min_weight": 0.01, "min_units_per_arm": 100},
}


def experiment_body(base: dict = ONBOARDING, **overrides) -> dict:
    """A valid experiment body; keyword arguments replace top-level fields (None removes)."""
    body = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def make_experiment(session: Session, base: dict = ONBOARDING, **overrides) -> Experiment:
    return create_experiment(
        session=session, spec=ExperimentSpec.from_dict(experiment_body(base, **overrides))
    )
