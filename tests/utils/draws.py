"""Exact posterior draws for simulation references."""

import numpy as np


def log_beta_draws(alpha: float, beta: float, rng: np.random.Generator, size: int) -> np.ndarray:
    """log p for p ~ Beta(alpha, beta), exact for any positive parameters: log G_a − log(G_a +
    G_b) with log G ~ log Gamma(shape) drawn as log Gamma(shape + 1) + log(U) / shape, which does
    not underflow where p itself would (alpha = 1e-4 puts most of p below 1e-300, where
    `rng.beta` answers 0 and ties)."""

    def log_gamma(shape):
        return np.log(rng.standard_gamma(shape + 1, size)) + np.log(rng.uniform(size=size)) / shape

    a, b = log_gamma(alpha), log_gamma(beta)
    return a - np.logaddexp(a, b)
