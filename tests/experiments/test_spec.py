"""ExperimentSpec: cross-field rules, defaults and the generated factorial (no database)."""

import pytest

from experiments.errors import InvalidSpec
from experiments.spec import ExperimentSpec, factorial_key
from tests.utils.factories import FACTORIAL, ONBOARDING, experiment_body


def test_factorial_variants_follow_factor_order_with_equal_weights():
    spec = ExperimentSpec.from_dict(experiment_body(FACTORIAL))
    assert [v.key for v in spec.variants[:3]] == [
        "timing=morning,tone=friendly,channel=email",
        "timing=morning,tone=friendly,channel=push",
        "timing=morning,tone=urgent,channel=email",
    ]
    assert sum(v.weight for v in spec.variants) == pytest.approx(1.0)
    assert factorial_key({"a": "x", "b": "y"}) == "a=x,b=y"


def test_factors_are_inferred_from_variants_in_order_of_appearance():
    spec = ExperimentSpec.from_dict(experiment_body(ONBOARDING))
    assert spec.factors == (("timing", ("morning", "evening")), ("channel", ("push", "email")))


def test_suppressed_is_always_measured():
    spec = ExperimentSpec.from_dict(experiment_body(ONBOARDING))
    suppressed = spec.metrics[-1]
    assert (suppressed.key, suppressed.type, suppressed.role) == (
        "suppressed",
        "binary",
        "secondary",
    )
    assert suppressed.higher_is_better is False


def test_declared_suppressed_metric_is_kept_as_declared():
    body = experiment_body(ONBOARDING)
    body["metrics"].append({"key": "suppressed", "role": "guardrail", "margin": 0.01})
    spec = ExperimentSpec.from_dict(body)
    assert [m.key for m in spec.metrics].count("suppressed") == 1
    assert spec.metrics[-1].role == "guardrail"


def test_guardrails_default_to_higher_is_worse():
    spec = ExperimentSpec.from_dict(experiment_body(ONBOARDING))
    by_key = {m.key: m for m in spec.metrics}
    assert by_key["activated"].higher_is_better is True
    assert by_key["unsubscribed"].higher_is_better is False


def test_weights_within_tolerance_are_accepted():
    body = experiment_body(ONBOARDING)
    body["variants"][0]["weight"] = 0.5 + 4e-7
    ExperimentSpec.from_dict(body)
    body["variants"][0]["weight"] = 0.5 + 2e-6
    with pytest.raises(InvalidSpec) as raised:
        ExperimentSpec.from_dict(body)
    assert "variants" in raised.value.errors


def test_every_broken_rule_is_reported_together():
    body = experiment_body(ONBOARDING, control="nope", quiet_hours={"start": 3, "end": 3})
    with pytest.raises(InvalidSpec) as raised:
        ExperimentSpec.from_dict(body)
    assert set(raised.value.errors) == {"control", "quiet_hours"}
    assert raised.value.message.startswith("Invalid control: ")
    assert raised.value.message.endswith("(and 1 more)")


def test_bandit_settings_fill_from_defaults():
    spec = ExperimentSpec.from_dict(experiment_body(FACTORIAL, bandit={"min_weight": 0.05}))
    assert spec.bandit.min_weight == 0.05
    assert spec.bandit.update_every_seconds == 900
    assert spec.bandit.min_units_per_arm == 100


def test_the_threshold_of_caring_is_relative_unless_given_in_the_metrics_units():
    default = ExperimentSpec.from_dict(experiment_body(ONBOARDING))
    assert (default.relative_threshold_of_caring, default.threshold_of_caring) == (0.01, None)
    given = ExperimentSpec.from_dict(experiment_body(ONBOARDING, threshold_of_caring=0.002))
    assert given.threshold_of_caring == 0.002
    with pytest.raises(InvalidSpec) as refused:
        ExperimentSpec.from_dict(
            experiment_body(ONBOARDING, threshold_of_caring=0.002, relative_threshold_of_caring=0.1)
        )
    assert "threshold_of_caring" in refused.value.errors
