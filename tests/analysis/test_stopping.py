"""The recommendation: stop on a tripped guardrail, continue on a sample-ratio mismatch or
while the leader's expected loss is above the threshold of caring, conclude below it."""

from analysis.stopping import GuardrailCheck, recommend

BASE = {
    "metric": "activated",
    "variants": ["a", "b"],
    "units": [5000, 5000],
    "prob_best": [0.02, 0.98],
    "expected_loss": [0.01, 0.0002],
    "threshold": 0.001,
    "guardrails": [GuardrailCheck("unsubscribed", "b", 0.002, 0.4)],
    "srm_flag": False,
}


def test_conclude_when_the_leaders_expected_loss_is_below_the_threshold():
    advice = recommend(**BASE)
    assert (advice.action, advice.variant) == ("conclude", "b")
    assert "0.0002" in advice.reason and "0.001" in advice.reason


def test_continue_while_the_loss_is_above_the_threshold():
    advice = recommend(**{**BASE, "expected_loss": [0.01, 0.003]})
    assert (advice.action, advice.variant) == ("continue", "b")
    assert "above the threshold" in advice.reason


def test_stop_on_a_tripped_guardrail_before_anything_else():
    tripped = [GuardrailCheck("unsubscribed", "b", 0.002, 0.97)]
    advice = recommend(**{**BASE, "guardrails": tripped, "srm_flag": True})
    assert (advice.action, advice.variant) == ("stop", "b")
    assert "unsubscribed" in advice.reason and "0.970" in advice.reason
    # Exactly at the threshold is not over it.
    at = [GuardrailCheck("unsubscribed", "b", 0.002, 0.95)]
    assert recommend(**{**BASE, "guardrails": at}).action == "conclude"


def test_a_sample_ratio_mismatch_blocks_concluding():
    advice = recommend(**{**BASE, "srm_flag": True, "srm_p_value": 1e-6})
    assert advice.action == "continue" and "Sample ratio mismatch" in advice.reason


def test_no_units_yet():
    advice = recommend(**{**BASE, "units": [0, 10]})
    assert advice.action == "continue" and "units" in advice.reason
