"""Calibration: do the results' 95% intervals cover the truth 95% of the time?

Three sets of simulated experiments, each analysed by the functions the results answer uses
(analysis/summary.py), seeded:
- fixed split, 2 arms, true rates 2–15%, 200–5,000 units an arm: the rate and lift intervals;
- a bandit with drift: 3 periods whose base rate drifts while the weights change; the truth is
  the period-weighted rate of each arm and its lift. Analysed stratified, as the results do,
  and pooled, as a naive analysis would (the baseline: it under-covers).
Target: 93–97% for every interval Kairos reports.
"""

import time

import numpy as np

from analysis.summary import summarize_binary
from bench.common import row

EXPERIMENTS = 1_000
LOW, HIGH = 0.93, 0.97


def fixed(rng) -> tuple[float, float]:
    rate_hits = lift_hits = 0
    for _ in range(EXPERIMENTS):
        rates = rng.uniform(0.02, 0.15, size=2)
        n = int(rng.integers(200, 5_000))
        conversions = rng.binomial(n, rates)
        control, arm = summarize_binary([n, n], conversions, control=0)
        rate_hits += control.rate.low <= rates[0] <= control.rate.high
        lift_hits += arm.lift.low <= rates[1] / rates[0] - 1 <= arm.lift.high
    return rate_hits / EXPERIMENTS, lift_hits / EXPERIMENTS


def bandit(rng, stratify: bool) -> tuple[float, float]:
    rate_hits = lift_hits = 0
    for _ in range(EXPERIMENTS):
        base = rng.uniform(0.02, 0.10, size=3)
        effect = np.array([1.0, rng.uniform(0.8, 1.3)])
        weights = rng.dirichlet([2, 2], size=3)
        units = np.round(rng.multinomial(6_000, [1 / 3] * 3)[:, None] * weights).astype(int)
        conversions = rng.binomial(units, base[:, None] * effect)
        shares = units.sum(axis=1) / units.sum()
        truth = (shares[:, None] * base[:, None] * effect).sum(axis=0)
        control, arm = summarize_binary(units, conversions, control=0, stratify=stratify)
        rate_hits += control.rate.low <= truth[0] <= control.rate.high
        lift_hits += arm.lift.low <= truth[1] / truth[0] - 1 <= arm.lift.high
    return rate_hits / EXPERIMENTS, lift_hits / EXPERIMENTS


def main() -> bool:
    rng = np.random.default_rng(2026)
    started = time.perf_counter()
    rows = [
        ("fixed split", *fixed(rng), True),
        ("bandit with drift, stratified (Kairos)", *bandit(rng, True), True),
        ("bandit with drift, pooled (baseline)", *bandit(rng, False), False),
    ]
    print(f"{EXPERIMENTS:,} simulated experiments per line ({time.perf_counter() - started:.0f} s)")
    print(row("95% intervals", "rate covers", "lift covers", "", widths=(44, 16, 16, 4)))
    ok = True
    for name, rate, lift, ours in rows:
        print(row(name, f"{rate:.1%}", f"{lift:.1%}", "", widths=(44, 16, 16, 4)))
        if ours:
            ok &= LOW <= rate <= HIGH and LOW <= lift <= HIGH
    print(f"target: {LOW:.0%}–{HIGH:.0%} for Kairos's intervals")
    return ok
