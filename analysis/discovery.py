"""Which of a publication's comparisons may be called a win or a loss.

The rule this replaces, P(better) ≥ 0.95 for each comparison on its own, fails the way a
registry is used (simulated in bench/bench_registry.py):
- looked at daily, it fires at some look in 22% of A/A experiments over 28 days;
- every segment × metric × variant (or factor level) is its own comparison, so one null
  comparison in ten is published as a win or a loss, and the registry fills with them.

Each comparison's evidence against "no effect" is an e-value: the likelihood ratio of the
log-lift estimate θ̂ (its posterior mean, with variance V = sd²) under a Normal mixture of
effects θ ~ N(0, τ²) against θ = 0 (Robbins' mixture; the mSPRT of Johari et al. 2017),

    E_τ = √(V / (V + τ²)) · exp(θ̂² τ² / (2 V (V + τ²))),

averaged over the scales τ in MIXTURE_SDS (an average of e-values is one). As units accrue, θ̂
moves like a Gaussian random walk in the information 1/V, and E is then a test martingale under
no effect: by Ville's inequality it ever reaches 1/α with probability at most α. So 1/E is an
always-valid p-value: it holds however often one looks, and whenever one chooses to publish. θ̂
must be the data's own: an experiment that started from the registry's prior is published from
its own data (experiments/learnings/comparisons.py). The Normal approximation is checked by
simulation: 0.2% of A/A experiments ever show a win over 28 daily looks (bench registry).

Across the m comparisons of a publication, which overlap (`all` contains the segments, the
metrics are measured on the same units, levels share their variants), the Benjamini-Hochberg
step-up on these p-values is the e-BH procedure (Wang & Ramdas 2022): the k smallest are
discoveries, k the largest with p_(k) ≤ q·k/m. The expected share of false discoveries among
them is at most q·m₀/m ≤ q, whatever the dependence between the comparisons, and at whichever
look the publication is made.
"""

import numpy as np
from scipy import special

# The scales τ of the effects on the log rate ratio the mixture expects, equally weighted.
# One scale is most powerful for effects near it and saturates for much larger ones seen with
# few units (a 2.5-fold rate on 500 units an arm had p = 0.006 with τ = 0.1 alone); lifecycle
# messages move rates by anything from ±5% to several-fold, and the spread costs at most a
# factor 5 of evidence against the best single scale (simulated power: bench/bench_registry.py).
MIXTURE_SDS = (0.05, 0.1, 0.2, 0.4, 0.8)
FALSE_DISCOVERY_RATE = 0.05


def always_valid_p(log_lift, sd, mixture_sds=MIXTURE_SDS):
    """1 / E (at most 1) for log-lift estimates `log_lift` with posterior sds `sd` (numbers,
    or arrays of one shape)."""
    log_lift, sd = np.asarray(log_lift, dtype=float), np.asarray(sd, dtype=float)
    if not np.all(sd > 0) or not np.all(np.isfinite(log_lift)):
        raise ValueError("Need finite log-lifts and positive sds.")
    v = (sd * sd)[..., None]
    t = np.square(np.asarray(mixture_sds, dtype=float))
    logs = 0.5 * np.log(v / (v + t)) + log_lift[..., None] ** 2 * t / (2 * v * (v + t))
    log_e = special.logsumexp(logs, axis=-1) - np.log(t.size)
    p = np.exp(-np.maximum(log_e, 0.0))
    return float(p) if p.ndim == 0 else p


def discoveries(p_values, rate: float = FALSE_DISCOVERY_RATE) -> np.ndarray:
    """Which comparisons are discoveries at false-discovery rate `rate`: the Benjamini-Hochberg
    step-up on always-valid p-values (e-BH). A comparison without evidence (None, as one
    whose lift has no interval) counts among the m, and is never a discovery."""
    if not 0 < rate < 1:
        raise ValueError("Need 0 < rate < 1.")
    p = np.array([1.0 if x is None else x for x in p_values], dtype=float)
    found = np.zeros(p.size, dtype=bool)
    if p.size == 0:
        return found
    order = np.argsort(p, kind="stable")
    passing = np.nonzero(p[order] <= rate * np.arange(1, p.size + 1) / p.size)[0]
    if passing.size:
        found[order[: passing[-1] + 1]] = True
    return found
