"""Conjugate summaries against exact values, simulation and golden numbers."""

import itertools

import numpy as np
import pytest

from analysis.conjugate import (
    expected_loss,
    lift_summary,
    prob_beat,
    prob_beat_closed_form,
    rate_summary,
)

CASES = [
    (11, 91, 6, 96),
    (3, 5, 2, 9),
    (101, 1901, 81, 1921),
    (1, 1, 1, 1),
    (500, 9500, 450, 9550),
    (2, 30, 1, 31),
]


def test_prob_beat_matches_the_closed_form():
    grid = itertools.product([1, 2, 7, 40], [3, 20, 300], [1, 5, 45], [2, 25, 280])
    errors = [abs(prob_beat(*p) - prob_beat_closed_form(*p)) for p in grid]
    assert max(errors) < 1e-5  # the results need 0.005


@pytest.mark.parametrize("params", CASES)
def test_prob_beat_matches_simulation(params):
    a, b, a0, b0 = params
    rng = np.random.default_rng(5)
    draws = 1_000_000
    simulated = np.mean(rng.beta(a, b, draws) > rng.beta(a0, b0, draws))
    assert prob_beat(*params) == pytest.approx(simulated, abs=0.002)  # > 4 standard errors


@pytest.mark.parametrize("params", CASES)
def test_prob_beat_is_complementary(params):
    a, b, a0, b0 = params
    assert prob_beat(a, b, a0, b0) + prob_beat(a0, b0, a, b) == pytest.approx(1.0, abs=1e-6)


def test_golden_numbers():
    assert round(prob_beat(101, 1901, 81, 1921), 5) == 0.93602
    rate = rate_summary(101, 1901)
    assert (round(rate.mean, 5), round(rate.low, 5), round(rate.high, 5)) == (
        0.05045,
        0.0413,
        0.06045,
    )
    lift = lift_summary(101, 1901, 81, 1921, np.random.default_rng(7))
    assert round(lift.mean, 5) == 0.26187
    assert lift.low == pytest.approx(-0.062, abs=0.01)
    assert lift.high == pytest.approx(0.666, abs=0.01)


def test_lift_mean_is_the_mean_of_simulated_lifts():
    rng = np.random.default_rng(9)
    lift = lift_summary(60, 940, 45, 955, rng)
    draws = rng.beta(60, 940, 1_000_000) / rng.beta(45, 955, 1_000_000) - 1
    assert lift.mean == pytest.approx(draws.mean(), abs=0.005)
    assert lift.low < lift.mean < lift.high


def test_lift_needs_a_control_with_alpha_over_one():
    with pytest.raises(ValueError, match="alpha > 1"):
        lift_summary(5, 10, 1, 50, np.random.default_rng(0))


def test_expected_loss():
    loss = expected_loss([101, 81, 90], [1901, 1921, 1912], np.random.default_rng(7))
    assert np.all(loss >= 0)
    assert loss[0] < loss[2] < loss[1]  # the likely best arm gives up least
    # Two arms: E[max − p_i] = E[(p_j − p_i)+], checked against a larger simulation.
    rng = np.random.default_rng(3)
    a = rng.beta(20, 380, 2_000_000)
    b = rng.beta(30, 370, 2_000_000)
    exact = [np.maximum(b - a, 0).mean(), np.maximum(a - b, 0).mean()]
    loss = expected_loss([20, 30], [380, 370], np.random.default_rng(4))
    assert loss == pytest.approx(exact, abs=2e-4)
