"""Posterior curves for plots: one shared grid, densities that integrate to about 1."""

import numpy as np

from analysis.curves import posterior_curves


def test_beta_curves_share_a_grid_within_0_1_and_integrate_to_one():
    curves = posterior_curves([(0.05, 0.03, 0.075), (0.08, 0.06, 0.1)], bounded=True)
    (x1, y1), (x2, y2) = curves
    assert x1 == x2 and x1[0] >= 0 and x1[-1] <= 1
    for y in (y1, y2):
        assert np.trapezoid(y, x1) == np.float64(np.trapezoid(y, x1))
        assert abs(np.trapezoid(y, x1) - 1) < 0.02
    assert x1[int(np.argmax(y1))] < x1[int(np.argmax(y2))]


def test_unbounded_means_are_normal_and_degenerate_intervals_do_not_fail():
    (x, y), (_, flat) = posterior_curves([(12.0, 10.0, 14.0), (5.0, 5.0, 5.0)], bounded=False)
    assert abs(x[int(np.argmax(y))] - 12.0) < 0.3
    assert all(np.isfinite(flat))
    assert posterior_curves([], bounded=True) == []
