"""The learnings registry as it is used: looked at daily, many comparisons, evidence pooled.

Three simulations, seeded, each judged by the old rule and by the publication's (pure pieces
of experiments/learnings/: analysis/contrasts.py, discovery.py, evidence.py):
- peeking: A/A experiments (5%, 200 units an arm a day) looked at daily for 28 days: how many
  ever show a win;
- the registry: experiments with 3 segments (and `all`) × 3 metrics × 2 variants against a
  control, 24 comparisons, most of them null; one in five with a real +20% on one metric of
  one variant in some segments. Published at day 28, or at the first daily look that shows a
  win ("when it looks good"): the share of null comparisons published as a win or a loss, the
  share of false wins among the wins (a win where the truth is no effect or worse), and the
  share of real effects published as a win, at three experiment sizes;
- evidence: registries of 8 A/A experiments (2,000 units an arm) pooled by the old scale,
  log(1 + the lift's mean), and by the posterior mean and sd of log(p_level / p_baseline).

The old rule: `flat` if the 95% interval lies within ±2%, else a win when P(better) ≥ 0.95, a
loss when ≤ 0.05. The new one: the same, but a win or a loss must be a discovery of e-BH at a
5% false-discovery rate over the publication's comparisons. For speed, P(better) and the
interval come from the Normal approximation of log p_variant − log p_control with its exact
Beta moments (the results integrate exactly; at these counts the two agree to ±0.01 in
P(better)); the evidence lines use the results' own summaries.
Targets: A/A ever showing a win ≤ 5%; null comparisons published as a win or loss ≤ 1%; false
wins ≤ 5% of the wins over the three sizes (e-BH bounds the expected share within each
publication; across publications the share also depends on how many real effects there were
to find, and at the smallest size there are few wins at all); A/A evidence centred within
±0.01 on the log scale and missing 0 as often upward as downward (each ≤ 3.5%).
"""

import math
import time

import numpy as np
from scipy import special

from analysis.contrasts import beta_log_moments, variant_log_ratios
from analysis.discovery import always_valid_p, discoveries
from analysis.evidence import Study, random_effects
from analysis.summary import Z, summarize_binary
from bench.common import row

DAYS = 28
FLAT_MARGIN = 0.02
WIN = 0.95
RATE = 0.05
AA_EXPERIMENTS = 2_000
AA_PER_DAY = 200
EXPERIMENTS = 1_000
REAL_SHARE = 0.2
REAL_LIFT = 1.2
SIZES = (1_800, 6_000, 12_000)  # units a day, over the three arms and three segments
SEGMENT_SHARES = np.array([0.4, 0.25, 0.35])
# Base rates per (metric, segment); the last metric is one where lower is better.
BASE_RATES = np.array([[0.05, 0.08, 0.03], [0.03, 0.05, 0.02], [0.004, 0.006, 0.003]], dtype=float)
HIGHER_IS_BETTER = np.array([True, True, False])
REGISTRIES = 1_000
POOLED = 8
POOLED_UNITS = 2_000


def comparisons(units, conversions, higher_is_better):
    """θ̂, its sd, P(better) and the lift's interval of arms 1.. against arm 0, per look.
    units, conversions: (..., arms)."""
    mean, variance = beta_log_moments(1 + conversions, 1 + units - conversions)
    theta = mean[..., 1:] - mean[..., :1]
    sd = np.sqrt(variance[..., 1:] + variance[..., :1])
    prob = special.ndtr(theta / sd)
    prob = np.where(higher_is_better, prob, 1 - prob)
    low, high = np.expm1(theta - Z * sd), np.expm1(theta + Z * sd)
    return theta, sd, prob, low, high


def old_verdicts(prob, low, high):
    flat = (low >= -FLAT_MARGIN) & (high <= FLAT_MARGIN)
    return np.where(flat, 0, np.where(prob >= WIN, 1, np.where(prob <= 1 - WIN, -1, 0)))


def new_verdicts(theta, sd, prob, low, high, rate=0.05):
    """Per publication (the last axis holds its comparisons): 1 win, −1 loss, 0 otherwise."""
    found = np.apply_along_axis(discoveries, -1, always_valid_p(theta, sd), rate)
    return np.where(found, old_verdicts(prob, low, high), 0)


def peeking(rng):
    conversions = rng.binomial(AA_PER_DAY, RATE, size=(AA_EXPERIMENTS, DAYS, 2)).cumsum(axis=1)
    units = np.broadcast_to(AA_PER_DAY * np.arange(1, DAYS + 1)[None, :, None], conversions.shape)
    theta, sd, prob, low, high = comparisons(units, conversions, True)
    old = old_verdicts(prob, low, high)[..., 0]
    new = new_verdicts(theta, sd, prob, low, high)[..., 0]
    return [
        ("P(better) ≥ 0.95 (before)", (old[:, -1] == 1).mean(), (old == 1).any(axis=1).mean()),
        ("discovery, FDR 5% (after)", (new[:, -1] == 1).mean(), (new == 1).any(axis=1).mean()),
    ]


def registry(rng, units_per_day):
    """Per rule and publication time: (null comparisons published as a win or a loss, false
    wins, wins, real effects published as a win)."""
    e, s, m = EXPERIMENTS, len(SEGMENT_SHARES), len(BASE_RATES)
    # The truth: multipliers (experiments, segments, metrics, arms); most are 1.
    truth = np.ones((e, s, m, 3))
    real = rng.random(e) < REAL_SHARE
    for i in np.nonzero(real)[0]:
        arm, metric = rng.integers(1, 3), rng.integers(0, 2)
        segments = rng.random(s) < 0.5
        segments[rng.integers(0, s)] = True
        truth[i, segments, metric, arm] = REAL_LIFT
    per_arm = units_per_day * SEGMENT_SHARES / 3
    units = rng.poisson(per_arm[None, None, :, None], size=(e, DAYS, s, 3)).astype(float)
    rates = BASE_RATES.T[None, :, :, None] * truth  # (e, s, m, arms)
    conversions = rng.binomial(units[:, :, :, None, :].astype(int), rates[:, None])
    units = units.cumsum(axis=1)[:, :, :, None, :].repeat(m, axis=3)
    conversions = conversions.cumsum(axis=1).astype(float)
    # `all`: the segments summed (a fixed split: the results pool its cells); its true
    # effect is the segments' own, weighted by their conversions.
    units = np.concatenate([units.sum(axis=2, keepdims=True), units], axis=2)
    conversions = np.concatenate([conversions.sum(axis=2, keepdims=True), conversions], axis=2)
    weights = (SEGMENT_SHARES * BASE_RATES).T[None, :, :, None]  # (1, s, m, 1)
    overall = (weights * truth).sum(axis=1, keepdims=True) / weights.sum(axis=1, keepdims=True)
    effect = np.concatenate([overall, truth], axis=1)[..., 1:] - 1  # the control is 1
    better = np.where(HIGHER_IS_BETTER[None, None, :, None], effect, -effect).reshape(e, -1)
    effect = effect.reshape(e, -1)
    higher = HIGHER_IS_BETTER[None, None, None, :, None]
    theta, sd, prob, low, high = comparisons(units, conversions, higher)
    shape = (e, DAYS, -1)  # a publication: its 4 × 3 × 2 comparisons
    flat = [x.reshape(shape) for x in (theta, sd, prob, low, high)]
    verdicts = {"before": old_verdicts(*flat[2:]), "after": new_verdicts(*flat)}
    null = effect == 0
    found = {}
    for rule, v in verdicts.items():
        first_win = np.where((v == 1).any(axis=2).any(axis=1), (v == 1).any(axis=2).argmax(1), -1)
        for when, day in (("day 28", np.full(e, DAYS - 1)), ("when it looks good", first_win)):
            published = v[np.arange(e), day]
            wins = published == 1
            false_wins = wins & (better <= 0)
            real = better > 0
            found[(rule, when)] = (
                (published[null] != 0).mean(),
                int(false_wins.sum()),
                int(wins.sum()),
                (wins & real).sum() / real.sum(),
            )
    return found


def evidence(rng, rate):
    """Per scale: mean pooled θ, share of intervals above 0, below 0."""
    found = {"log(1 + lift mean) (before)": [], "log-ratio mean, sd (after)": []}
    conversions = rng.binomial(POOLED_UNITS, rate, size=(REGISTRIES, POOLED, 2))
    for experiments in conversions:
        old, new = [], []
        for i, (c0, c1) in enumerate(experiments):
            if c0 == 0:
                continue  # no lift mean: the evidence query leaves it out
            units, counts = [POOLED_UNITS, POOLED_UNITS], [c0, c1]
            _, arm = summarize_binary(units, counts, control=0)
            se = (math.log1p(arm.lift.high) - math.log1p(arm.lift.low)) / (2 * Z)
            old.append(Study(str(i), math.log1p(arm.lift.mean), se))
            _, theta = variant_log_ratios([units], [counts], control=0, stratify=False)
            new.append(Study(str(i), theta.mean, theta.sd))
        for name, studies in zip(found, (old, new), strict=True):
            pooled = random_effects(studies)
            found[name].append((pooled.log_lift, pooled.low > 0, pooled.high < 0))
    return {name: np.mean(values, axis=0) for name, values in found.items()}


def main() -> bool:
    started = time.perf_counter()
    ok = True
    print(f"Peeking: {AA_EXPERIMENTS:,} A/A experiments, {AA_PER_DAY} units an arm a day")
    print(row("shows a win", "at day 28", "at any of 28 looks", widths=(36, 14, 20)))
    for name, single, ever in peeking(np.random.default_rng([13, 1])):
        print(row(name, f"{single:.1%}", f"{ever:.1%}", widths=(36, 14, 20)))
    ok &= ever <= 0.05
    tally = {}  # (false wins, wins) of the new rule per publication time, over the sizes
    for size in SIZES:
        print(
            f"\nRegistry: {EXPERIMENTS:,} experiments × 24 comparisons (4 segments incl. all × "
            f"3 metrics × 2 variants), {REAL_SHARE:.0%} with a real +20% somewhere; {size:,} "
            "units a day"
        )
        widths = (40, 18, 22, 16)
        print(row("published", "nulls win/loss", "false wins/wins", "real found", widths=widths))
        found = registry(np.random.default_rng([13, 2, size]), size)
        for (rule, when), (nulls, false_wins, wins, power) in found.items():
            share = f"{false_wins / max(wins, 1):.1%} ({false_wins}/{wins})"
            print(row(f"{rule}, {when}", f"{nulls:.2%}", share, f"{power:.1%}", widths=widths))
            if rule == "after":
                ok &= nulls <= 0.01
                before = tally.get(when, (0, 0))
                tally[when] = (before[0] + false_wins, before[1] + wins)
    for when, (false_wins, wins) in tally.items():
        print(f"after, {when}: {false_wins} false wins of {wins} over the three sizes")
        ok &= false_wins <= 0.05 * wins
    for rate in (0.02, 0.01):
        print(f"\nEvidence: {REGISTRIES:,} registries of {POOLED} A/A experiments at {rate:.0%}")
        widths = (36, 16, 16, 16)
        print(row("pooled on", "mean θ", "CI above 0", "CI below 0", widths=widths))
        found = evidence(np.random.default_rng([13, 3, int(rate * 100)]), rate)
        for name, (centre, up, down) in found.items():
            print(row(name, f"{centre:+.4f}", f"{up:.1%}", f"{down:.1%}", widths=widths))
        ok &= abs(centre) < 0.01 and up <= 0.035 and down <= 0.035
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return ok


if __name__ == "__main__":
    main()
