"""Posterior densities to draw, from the summaries a results answer gives (mean and 95% interval).

A results answer keeps each arm's posterior as its mean and central 95% interval; a bandit's
stratified posterior is a mixture with no closed form. For a picture, each is drawn as the
Beta (rates) or Normal (means) with the same mean and the standard deviation the interval
implies: exact for an unstratified Beta's mean, close for its spread, and a faithful shape for
the question a reader asks of the plot (where the arms sit, and how much they overlap).
"""

import numpy as np
from scipy import stats

Z95 = stats.norm.ppf(0.975)
POINTS = 121


def posterior_curves(
    summaries: list[tuple[float, float, float]], *, bounded: bool, points: int = POINTS
) -> list[tuple[list[float], list[float]]]:
    """For each (mean, low, high): (x, density) on one grid shared by all, so that the curves
    can be compared; `bounded` rates live in [0, 1] (Beta), others anywhere (Normal)."""
    if not summaries:
        return []
    values = np.asarray(summaries, dtype=float)
    means, lows, highs = values[:, 0], values[:, 1], values[:, 2]
    sds = np.maximum((highs - lows) / (2 * Z95), 1e-9)
    start = float(np.min(means - 4 * sds))
    stop = float(np.max(means + 4 * sds))
    if bounded:
        start, stop = max(start, 0.0), min(stop, 1.0)
    grid = np.linspace(start, stop, points)
    curves = []
    for mean, sd in zip(means, sds, strict=True):
        if bounded and 0 < mean < 1 and sd**2 < mean * (1 - mean):
            common = mean * (1 - mean) / sd**2 - 1
            density = stats.beta.pdf(grid, mean * common, (1 - mean) * common)
        else:
            density = stats.norm.pdf(grid, mean, sd)
        density = np.nan_to_num(density, nan=0.0, posinf=0.0)
        curves.append((grid.round(6).tolist(), density.round(4).tolist()))
    return curves
