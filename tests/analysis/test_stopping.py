"""The recommendation: stop on a tripped guardrail, continue on a sample-ratio mismatch, while
the leader or the control is imprecise, or while the leader's expected loss is above the
threshold of caring (a share of the control's mean unless set in the metric's units);
conclude below it. Guardrails trip on an always-valid p-value: a harmless arm seldom trips
however often it is looked at, a harmful one does."""

import numpy as np
import pytest
from scipy import integrate, stats

from analysis.stopping import (
    GUARDRAIL_FALSE_TRIP_RATE,
    HARM_MIXTURE_SCALE,
    GuardrailCheck,
    ThresholdOfCaring,
    guardrail_p_value,
    recommend,
)
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
        note_codes=(),
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
    "guardrails": [GuardrailCheck("unsubscribed", "b", 0.002, 0.4, 0.6)],
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
    tripped = [
        GuardrailCheck("unsubscribed", "b", 0.002, 0.97, 0.03),
        GuardrailCheck("complained", "b", 0.0, 0.99, 0.0004),
    ]
    advice = recommend(**{**BASE, "guardrails": tripped, "srm_flag": True})
    assert (advice.action, advice.code, advice.variant) == ("stop", "guardrail_tripped", "b")
    assert "complained" in advice.reason and "p = 0.0004" in advice.reason
    assert "1 more guardrail" in advice.reason
    assert advice.prob_wrong_choice is None
    assert [(g.tripped, g.conclusive) for g in tripped] == [(True, False), (True, True)]
    assert "The harm is conclusive" in advice.reason
    advice = recommend(**{**BASE, "guardrails": tripped[:1]})
    assert "Not yet conclusive" in advice.reason and "floor weight" in advice.reason
    # Exactly at the boundary trips; a high P(worse) alone does not.
    at = [GuardrailCheck("unsubscribed", "b", 0.002, 0.95, 0.05)]
    assert recommend(**{**BASE, "guardrails": at}).action == "stop"
    below = [GuardrailCheck("unsubscribed", "b", 0.002, 0.999, 0.0501)]
    assert recommend(**{**BASE, "guardrails": below}).action == "conclude"


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


def test_guardrail_p_values_golden():
    # Unsubscribes (lower is better): 1.0% ± 0.1% on control, 1.3% ± 0.1% on the variant.
    p = guardrail_p_value(0.010, 0.001, 0.013, 0.001, margin=0.0, higher_is_better=False)
    assert round(float(p), 5) == 0.19694
    # Mirrored for a metric where higher is better: the variant is the better one.
    better = guardrail_p_value(0.010, 0.001, 0.013, 0.001, margin=0.0, higher_is_better=True)
    assert float(better) == 1.0
    # A margin of the whole gap leaves nothing to show; the same gap measured four times more
    # precisely is conclusive.
    assert (
        float(guardrail_p_value(0.01, 0.001, 0.013, 0.001, margin=0.003, higher_is_better=False))
        == 1.0
    )
    assert (
        float(guardrail_p_value(0.01, 0.00025, 0.013, 0.00025, margin=0.0, higher_is_better=False))
        < 1e-6
    )
    # No spread (no data) is no evidence.
    assert float(guardrail_p_value(0.01, 0.0, 0.05, 0.0, margin=0.0, higher_is_better=False)) == 1.0


def test_guardrail_p_values_do_not_depend_on_the_metrics_units():
    args = np.array([0.010, 0.001, 0.0125, 0.0011])
    cents = guardrail_p_value(*args, margin=0.0005, higher_is_better=False)
    dollars = guardrail_p_value(*(args * 100), margin=0.05, higher_is_better=False)
    assert float(cents) == pytest.approx(float(dollars), rel=1e-12)


def daily_posteriors(rng, rate, harm, arms, looks, units_per_look):
    """Beta(1 + c, 1 + n − c) means and sds of control and variant at each look."""
    counts = rng.binomial(units_per_look, [rate, rate * (1 + harm)], size=(arms, looks, 2))
    c = counts.cumsum(axis=1)
    n = units_per_look * np.arange(1, looks + 1)[None, :, None]
    a, b = 1.0 + c, 1.0 + n - c
    return a / (a + b), np.sqrt(a * b / (a + b + 1)) / (a + b)


@pytest.mark.parametrize(
    ("rate", "margin", "looks", "units_per_look"),
    [
        (0.005, 0.0, 28, 1000),  # daily, for four weeks
        (0.02, 0.0, 28, 1000),
        (0.02, 0.0005, 28, 1000),
        (0.01, 0.0, 672, 40),  # every hour
    ],
)
def test_harmless_arms_seldom_trip_however_often_one_looks(rate, margin, looks, units_per_look):
    """A/A arms (the variant truly worse by exactly the margin), looked at again and again:
    few ever trip. Before, P(worse) > 0.95 at any of 28 daily looks tripped 22% of them."""
    rng = np.random.default_rng(13)
    harm = margin / rate
    mean, sd = daily_posteriors(rng, rate, harm, 2000, looks, units_per_look)
    p = guardrail_p_value(
        mean[..., 0], sd[..., 0], mean[..., 1], sd[..., 1], margin=margin, higher_is_better=False
    )
    ever = (p <= GUARDRAIL_FALSE_TRIP_RATE).any(axis=1).mean()
    assert 0.002 < ever < GUARDRAIL_FALSE_TRIP_RATE


def test_a_harmful_arm_trips():
    rng = np.random.default_rng(13)
    mean, sd = daily_posteriors(rng, 0.005, 0.5, 2000, 28, 1000)
    p = guardrail_p_value(
        mean[..., 0], sd[..., 0], mean[..., 1], sd[..., 1], margin=0.0, higher_is_better=False
    )
    tripped = (p <= GUARDRAIL_FALSE_TRIP_RATE).any(axis=1)
    assert tripped.mean() > 0.8
    assert np.median((p <= GUARDRAIL_FALSE_TRIP_RATE).argmax(axis=1)[tripped] + 1) < 20


@pytest.mark.parametrize(("harm", "sd", "margin"), [(0.003, 0.0014, 0.0), (0.001, 0.002, 0.0005)])
def test_the_closed_form_is_the_mixture_it_claims(harm, sd, margin):
    """1 / p = ∫ N(harm; θ, sd²) / N(harm; margin, sd²) · half-Normal(θ − margin; τ) dθ."""
    control, arm = 0.01, 0.01 + harm
    tau = HARM_MIXTURE_SCALE * (control + arm) / 2

    def weighted_ratio(theta):
        ratio = stats.norm.pdf(harm, theta, sd) / stats.norm.pdf(harm, margin, sd)
        return ratio * 2 * stats.norm.pdf(theta - margin, 0, tau)

    mixture, _ = integrate.quad(weighted_ratio, margin, margin + 12 * tau)
    p = guardrail_p_value(
        control, sd / np.sqrt(2), arm, sd / np.sqrt(2), margin=margin, higher_is_better=False
    )
    assert float(p) == pytest.approx(min(1.0, 1 / mixture), rel=1e-8)
