"""Decisions under daily looks: the recommendation and the guardrails, read every day for four
weeks, the way people use them.

Simulated fixed-split experiments with two arms and 1,000 units an arm a day, looked at once a
day for 28 days; each look analysed by the functions the results answer uses
(analysis/summary.py, analysis/stopping.py), seeded.
- Recommendation, primary metric at p = 0.5%, 1%, 2%: an A/A test, a variant 15% worse and
  one 15% better. The first look that says `conclude` decides (people stop when told to): how
  often the variant is chosen, on which day, and the leader's expected loss at that look as a
  share of the control's rate.
- Guardrails on a metric at 0.5% (lower is better): how often an A/A variant trips at some
  look, with margins 0 and 0.0005, daily and (Kairos only) every 15 minutes as a bandit's
  reweights look; and how often and how soon a variant with 50% more of it trips. The
  posterior means and sds the p-value takes are computed for every look at once.
A look at which the control is not yet known within ±20% (`known_precisely`) cannot conclude,
so it is analysed only if the baseline still needs it: a shortcut with the same answers.
Baseline: the rules before issue 13 (conclude once the leader's expected loss is below 0.001
in rate units; trip when P(worse by more than the margin) > 0.95), on the same data.
"""

import time
from functools import cache

import numpy as np
from scipy import special

from analysis.stopping import (
    GUARDRAIL_FALSE_TRIP_RATE,
    ThresholdOfCaring,
    guardrail_p_value,
    known_precisely,
    recommend,
)
from analysis.summary import INTERVAL, Interval, prob_worse_beta, summarize_binary
from bench.common import row
from experiments.spec import DEFAULT_RELATIVE_THRESHOLD_OF_CARING

DAYS = 28
UNITS_PER_DAY = 1_000  # per arm
RATES = (0.005, 0.01, 0.02)
EFFECTS = {"A/A": 1.0, "15% worse": 0.85, "15% better": 1.15}
RUNS = 400
GUARDRAIL_RATE = 0.005
GUARDRAIL_MARGINS = (0.0, 0.0005)
GUARDRAIL_RUNS = 400
GUARDRAIL_HARM = 0.5
OLD_THRESHOLD = 0.001
OLD_P_WORSE = 0.95
ARMS = ["control", "variant"]
TARGET_WORSE_CHOSEN = 0.05
NEGLIGIBLE_LOSS = DEFAULT_RELATIVE_THRESHOLD_OF_CARING
TARGET_FALSE_TRIPS = 0.05


def daily_counts(rng, rate: float, effect: float, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """(units, conversions) at each daily look: shape (days,) and (runs, days, arms)."""
    units = UNITS_PER_DAY * np.arange(1, DAYS + 1)
    daily = rng.binomial(UNITS_PER_DAY, [rate, rate * effect], size=(runs, DAYS, 2))
    return units, daily.cumsum(axis=1)


def baseline_choice(arms) -> str | None:
    """The old rule: the leader by P(best) (ties broken as the old code did), chosen once its
    expected loss is below 0.001."""
    candidates = zip(
        [a.prob_best for a in arms], [a.expected_loss for a in arms], ARMS, strict=True
    )
    _, loss, leader = max(candidates)
    return leader if loss < OLD_THRESHOLD else None


def kairos_choice(arms) -> str | None:
    """The arm the results answer recommends concluding with, or None."""
    advice = recommend(
        metric="primary",
        variants=ARMS,
        arms=arms,
        control=0,
        threshold=ThresholdOfCaring(DEFAULT_RELATIVE_THRESHOLD_OF_CARING),
        guardrails=[],
        srm_flag=False,
    )
    return advice.variant if advice.action == "conclude" else None


def relative_loss(arms, chosen: str) -> float:
    """The chosen arm's expected loss as a share of the control's rate."""
    return arms[ARMS.index(chosen)].expected_loss / arms[0].rate.mean


def rate_intervals(units, conversions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each arm's posterior mean and 95% interval at every look, as the results give them
    (Beta(1 + conversions, 1 + failures)): (mean, low, high), each (runs, days, arms)."""
    alpha = 1.0 + conversions
    beta = 1.0 + units[None, :, None] - conversions
    tail = (1 - INTERVAL) / 2
    low, high = special.betaincinv(alpha, beta, tail), special.betaincinv(alpha, beta, 1 - tail)
    return alpha / (alpha + beta), low, high


def first_conclusions(units, conversions) -> dict[str, list]:
    """Per rule, per run: (day, arm chosen, relative loss) at the first `conclude`, or None."""
    found = {"Kairos": [], "baseline": []}
    mean, low, high = rate_intervals(units, conversions)
    for run in range(conversions.shape[0]):
        chosen = {"Kairos": None, "baseline": None}
        for day in range(DAYS):
            control = Interval(mean[run, day, 0], low[run, day, 0], high[run, day, 0])
            if chosen["baseline"] is not None and not known_precisely(control):
                continue
            arms = summarize_binary([units[day]] * 2, conversions[run, day], control=0)
            if chosen["baseline"] is None and (arm := baseline_choice(arms)):
                chosen["baseline"] = (day + 1, arm, relative_loss(arms, arm))
            if chosen["Kairos"] is None and (arm := kairos_choice(arms)):
                chosen["Kairos"] = (day + 1, arm, relative_loss(arms, arm))
            if all(chosen.values()):
                break
        for rule, value in chosen.items():
            found[rule].append(value)
    return found


def recommendation_rows(rng) -> list[tuple]:
    rows = []
    for rate in RATES:
        for scenario, effect in EFFECTS.items():
            units, conversions = daily_counts(rng, rate, effect, RUNS)
            for rule, firsts in first_conclusions(units, conversions).items():
                done = [f for f in firsts if f is not None]
                variant = [f for f in done if f[1] == "variant"]
                rows.append(
                    (
                        f"p = {rate:.1%}, {scenario}",
                        rule,
                        len(done) / RUNS,
                        len(variant) / RUNS,
                        np.median([f[0] for f in done]) if done else None,
                        [f[2] for f in variant],
                    )
                )
    return rows


@cache
def prob_worse(units: int, control: int, variant: int, margin: float) -> float:
    """P(the variant's rate exceeds the control's by more than `margin`), as the results
    compute it for a lower-is-better guardrail (on the mirror images 1 − p)."""
    return prob_worse_beta(
        1 + units - variant, 1 + variant, 1 + units - control, 1 + control, margin
    )


def baseline_trips(units, conversions, margin) -> np.ndarray:
    """The day each run first trips under the old rule (0: never)."""
    days = np.zeros(conversions.shape[0], dtype=int)
    for run, counts in enumerate(conversions):
        for look in range(len(units)):
            if prob_worse(int(units[look]), *map(int, counts[look]), margin) > OLD_P_WORSE:
                days[run] = look + 1
                break
    return days


def kairos_trips(units, conversions, margin, looks_per_day=1) -> np.ndarray:
    """The day each run first trips (0: never), every look at once: the rates' posterior means
    and sds as the results give them (Beta(1 + conversions, 1 + failures)), then the p-value."""
    alpha = 1.0 + conversions
    beta = 1.0 + units[None, :, None] - conversions
    mean, sd = alpha / (alpha + beta), np.sqrt(alpha * beta / (alpha + beta + 1)) / (alpha + beta)
    p = guardrail_p_value(
        mean[..., 0], sd[..., 0], mean[..., 1], sd[..., 1], margin=margin, higher_is_better=False
    )
    hit = p <= GUARDRAIL_FALSE_TRIP_RATE
    return np.where(hit.any(axis=1), np.ceil((hit.argmax(axis=1) + 1) / looks_per_day), 0)


def quarter_hourly_counts(rng, rate: float, effect: float, runs: int):
    """(units, conversions) at a look every 15 minutes for DAYS days."""
    looks = DAYS * 96
    edges = np.round(np.linspace(0, DAYS * UNITS_PER_DAY, looks + 1)).astype(int)
    new = np.diff(edges)[None, :, None]
    counts = rng.binomial(new, [rate, rate * effect], size=(runs, looks, 2))
    return edges[1:], counts.cumsum(axis=1)


def guardrail_rows(rng) -> list[tuple]:
    """(case, rule, share of runs tripped, median day of the trip)."""
    rows = []

    def add(case, rule, days):
        tripped = days[days > 0]
        rows.append(
            (case, rule, tripped.size / days.size, np.median(tripped) if tripped.size else None)
        )

    harmless = daily_counts(rng, GUARDRAIL_RATE, 1.0, GUARDRAIL_RUNS)
    for margin in GUARDRAIL_MARGINS:
        case = f"A/A, margin {margin:g}"
        add(case, "Kairos", kairos_trips(*harmless, margin))
        add(case, "baseline", baseline_trips(*harmless, margin))
    every_15_minutes = quarter_hourly_counts(rng, GUARDRAIL_RATE, 1.0, GUARDRAIL_RUNS)
    add("A/A, margin 0, 15-min looks", "Kairos", kairos_trips(*every_15_minutes, 0.0, 96))
    harmful = daily_counts(rng, GUARDRAIL_RATE, 1 + GUARDRAIL_HARM, GUARDRAIL_RUNS)
    case = f"{GUARDRAIL_HARM:+.0%} harm, margin 0"
    add(case, "Kairos", kairos_trips(*harmful, 0.0))
    add(case, "baseline", baseline_trips(*harmful, 0.0))
    return rows


def percent(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def spread(values) -> str:
    """Median (largest) of some shares, or a dash."""
    if not values:
        return "–"
    return f"{np.median(values):.1%} ({max(values):.1%})"


def main() -> bool:
    rng = np.random.default_rng(13)
    started = time.perf_counter()
    recommendations = recommendation_rows(rng)
    guardrails = guardrail_rows(rng)
    print(
        f"{RUNS} simulated experiments a line, {UNITS_PER_DAY:,} units an arm a day, one look a "
        f"day for {DAYS} days ({time.perf_counter() - started:.0f} s)"
    )
    widths = (24, 10, 11, 16, 12, 26)
    print("First `conclude` within 28 daily looks; its loss: the chosen variant's expected loss")
    print("at that look as a share of the control's rate, median (largest)")
    header = ("recommendation", "rule", "concluded", "variant chosen", "median day", "its loss")
    print(row(*header, widths=widths))
    ok = True
    for name, rule, concluded, variant, day, losses in recommendations:
        day = "–" if day is None else f"{day:g}"
        print(
            row(
                name, rule, percent(concluded), percent(variant), day, spread(losses), widths=widths
            )
        )
        if rule == "Kairos" and "worse" in name:
            ok &= variant < TARGET_WORSE_CHOSEN
        if rule == "Kairos" and "A/A" in name:
            ok &= max(losses, default=0.0) <= NEGLIGIBLE_LOSS
    print()
    print(f"Guardrail at {GUARDRAIL_RATE:.1%} (lower is better), {GUARDRAIL_RUNS} arms a line")
    widths = (30, 10, 24, 12)
    print(row("guardrail", "rule", "tripped within 28 days", "median day", widths=widths))
    for case, rule, share, day in guardrails:
        day = "–" if day is None else f"{day:g}"
        print(row(case, rule, percent(share), day, widths=widths))
        if rule == "Kairos" and case.startswith("A/A"):
            ok &= share <= TARGET_FALSE_TRIPS
    print(
        f"target: a 15%-worse variant chosen < {TARGET_WORSE_CHOSEN:.0%}; an A/A variant chosen "
        f"only at a loss ≤ {NEGLIGIBLE_LOSS:.0%} of the control's rate; A/A guardrail trips ≤ "
        f"{TARGET_FALSE_TRIPS:.0%}"
    )
    return ok
