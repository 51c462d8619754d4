"""The recommendation: stop on a tripped guardrail, continue on a sample-ratio mismatch, while
the leader or the control is imprecise, or while the leader's expected loss is above the
threshold of caring (a share of the control's mean unless set in the metric's units);
conclude below it."""

import pytest

from analysis.stopping import GuardrailCheck, ThresholdOfCaring, recommend
from analysis.summary import ArmSummary, Interval


def arm(units, mean, half_width, prob_best, loss) -> ArmSummary:
    return ArmSummary(
        units=units,
        conversions=round(units * mean),
        rate=Interval(mean, mean - half_width, mean + half_width),
        lift=None,
        prob_beat_control=None,
        prob_best=prob_best,
        expected_loss=loss,
        prob_worse=None,
        notes=(),
    )


# A control at 2% known within ±10%, a variant at 2.6% within ±9%: b leads, risking 0.5% of
# the control's rate.
CONTROL = arm(5000, 0.02, 0.002, 0.02, 0.006)
LEADER = arm(5000, 0.026, 0.0024, 0.98, 0.0001)
BASE = {
    "metric": "activated",
    "variants": ["a", "b"],
    "arms": [CONTROL, LEADER],
    "control": 0,
    "threshold": ThresholdOfCaring(relative=0.01),
    "guardrails": [GuardrailCheck("unsubscribed", "b", 0.002, 0.4)],
    "srm_flag": False,
}


def test_conclude_when_the_leaders_loss_is_below_the_share_of_the_controls_mean():
    advice = recommend(**BASE)
    assert (advice.action, advice.code, advice.variant) == ("conclude", "negligible_loss", "b")
    assert advice.threshold == pytest.approx(0.0002)
    assert advice.relative_expected_loss == pytest.approx(0.005)
    assert advice.prob_wrong_choice == pytest.approx(0.02)
    assert "0.50% of the control's mean" in advice.reason and "1.00%" in advice.reason


def test_the_same_loss_is_too_much_at_a_lower_rate():
    # An expected loss of 0.0001 is 0.5% of a 2% rate but 2% of a 0.5% one.
    low = arm(20_000, 0.005, 0.0005, 0.02, 0.002)
    advice = recommend(**{**BASE, "arms": [low, LEADER]})
    assert (advice.action, advice.code, advice.variant) == ("continue", "loss_above_threshold", "b")
    assert advice.relative_expected_loss == pytest.approx(0.02)
    assert "above the threshold of caring" in advice.reason


def test_an_absolute_threshold_is_used_as_given():
    advice = recommend(**{**BASE, "threshold": ThresholdOfCaring(0.01, absolute=0.00005)})
    assert (advice.action, advice.threshold) == ("continue", 0.00005)
    advice = recommend(**{**BASE, "threshold": ThresholdOfCaring(0.01, absolute=0.001)})
    assert advice.action == "conclude" and "threshold of caring 0.001" in advice.reason


def test_no_conclusion_while_the_leader_or_the_control_is_imprecise():
    # 30 conversions: a 95% interval of about ±36% of the mean.
    vague_leader = arm(1000, 0.03, 0.011, 0.999, 0.00001)
    advice = recommend(**{**BASE, "arms": [CONTROL, vague_leader]})
    assert (advice.action, advice.code, advice.variant) == ("continue", "imprecise", "b")
    assert "'b' not known within ±20%" in advice.reason
    vague_control = arm(1000, 0.02, 0.009, 0.02, 0.006)
    advice = recommend(**{**BASE, "arms": [vague_control, LEADER]})
    assert advice.code == "imprecise" and "'a'" in advice.reason
    # A control whose mean is zero has no scale yet.
    zero = arm(1000, 0.0, 0.0, 0.02, 0.006)
    assert recommend(**{**BASE, "arms": [zero, LEADER]}).code == "imprecise"


def test_stop_on_a_tripped_guardrail_before_anything_else():
    tripped = [GuardrailCheck("unsubscribed", "b", 0.002, 0.97)]
    advice = recommend(**{**BASE, "guardrails": tripped, "srm_flag": True})
    assert (advice.action, advice.code, advice.variant) == ("stop", "guardrail_tripped", "b")
    assert "unsubscribed" in advice.reason and "0.970" in advice.reason
    assert advice.prob_wrong_choice is None
    # Exactly at the threshold is not over it.
    at = [GuardrailCheck("unsubscribed", "b", 0.002, 0.95)]
    assert recommend(**{**BASE, "guardrails": at}).action == "conclude"


def test_a_sample_ratio_mismatch_blocks_concluding():
    advice = recommend(**{**BASE, "srm_flag": True, "srm_p_value": 1e-6})
    assert advice.action == "continue" and "Sample ratio mismatch" in advice.reason
    assert advice.code == "sample_ratio_mismatch"


def test_no_units_yet():
    empty = arm(0, 0.5, 0.475, 0.5, 0.1)
    advice = recommend(**{**BASE, "arms": [empty, LEADER]})
    assert advice.action == "continue" and "units" in advice.reason
    assert advice.code == "empty_arm"


def test_a_threshold_of_caring_is_positive():
    with pytest.raises(ValueError, match="positive"):
        ThresholdOfCaring(relative=0.0)
    with pytest.raises(ValueError, match="positive"):
        ThresholdOfCaring(relative=0.01, absolute=-1.0)
