"""One run of the simulation: the hourly loop, the tally of what it sent, and the report.

Each simulated hour, `simulate` draws the hour's users from the world, asks Kairos for their
messages (one batch assignment on the simulated clock, so the bandit reweights as the hours
pass), tallies what each user was sent and what it cost against the best message, and reports
the conversions and suppressions that have happened by the hour's end. At the end it prints the
regret against an oracle and a uniform split, what Kairos's results say, and what the learnings
registry learned once the run publishes the experiment's learnings.

Run it again and it continues: the same seed gives users who behave the same way, but each run
names its users afresh (a unit keeps its first variant, so reused names would only replay the
first run's answers), and its simulated clock starts after the experiment's.
"""

import random
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from simulator.client import KairosClient, SimulationError
from simulator.world import (
    BASE,
    PUSH_CAPPED,
    VARIANTS,
    conversion_delay,
    experiment_body,
    new_user,
    true_rate,
    variant_key,
)


@dataclass
class Tally:
    """What a run sent and drew: units and conversions per (segment, variant), the regret of
    Kairos's choices and of a uniform split, and the latest weights per segment."""

    units: dict = field(default_factory=lambda: defaultdict(int))
    conversions: dict = field(default_factory=lambda: defaultdict(int))
    regret: float = 0.0
    uniform_regret: float = 0.0
    weights: dict = field(default_factory=dict)


def simulate(
    client: KairosClient,
    *,
    key: str = "simulated-onboarding",
    hours: int = 48,
    users_per_hour: int = 400,
    seed: int = 1,
    start: datetime | None = None,
    run: str | None = None,
    echo=print,
) -> Tally:
    """Simulate `hours` hours of `users_per_hour` users from `start` (default: after the
    experiment's clock, see _clock_after); `run` names this run's users (default: random)."""
    rng = random.Random(seed)
    run = run or secrets.token_hex(3)
    experiment = _ensure_experiment(client, key, echo)
    clock = start or _clock_after(experiment)
    end = clock + timedelta(hours=hours)
    echo(
        f"Simulated clock: {clock:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; users "
        f"sim-{run}-0-0 to sim-{run}-{hours - 1}-{users_per_hour - 1}."
    )
    best = {s: max(true_rate(s, v) for v in VARIANTS) for s in BASE}
    mean = {s: sum(true_rate(s, v) for v in VARIANTS) / len(VARIANTS) for s in BASE}
    pending: list[tuple[datetime, dict]] = []  # (when, event) not yet happened
    tally = Tally()
    event_number = 0
    for hour in range(hours):
        now = clock + timedelta(hours=hour)
        users = [new_user(rng, f"sim-{run}-{hour}-{i}") for i in range(users_per_hour)]
        _, answer = client.call(
            "POST",
            "/v1/assignments/batch",
            {"experiment": key, "units": users, "now": now.isoformat()},
        )
        for sent in answer["assignments"]:
            segment = sent["segment"]
            if sent["holdout"]:
                continue
            levels = sent["factors"]
            rate = true_rate(segment, levels)
            arm = (segment, sent["variant"])
            tally.units[arm] += 1
            tally.regret += best[segment] - rate
            tally.uniform_regret += best[segment] - mean[segment]
            tally.weights.setdefault(segment, {})[sent["variant"]] = sent["propensity"]
            event_number += 1
            if levels["channel"] == "push" and rng.random() < PUSH_CAPPED:
                pending.append((now, _event(event_number, sent, "suppressed", now)))
            if rng.random() < rate:
                delay = conversion_delay(rng)
                pending.append((now + delay, _event(event_number, sent, "activated", now + delay)))
                tally.conversions[arm] += 1
        pending = _report_due(client, pending, now + timedelta(hours=1))
        if (hour + 1) % 6 == 0 or hour + 1 == hours:
            echo(
                f"  hour {hour + 1:>3}/{hours}: {sum(tally.units.values()):,} users messaged, "
                f"{sum(tally.conversions.values()):,} will convert, regret so far "
                f"{tally.regret:.1f} (uniform {tally.uniform_regret:.1f})"
            )
    _report(tally, best, echo)
    _results(client, key, echo)
    _learnings(client, key, echo)
    return tally


def _report_due(client: KairosClient, pending: list, until: datetime) -> list:
    """Report the events that have happened by `until`; return those still to come."""
    due = [event for when, event in pending if when <= until]
    for begin in range(0, len(due), 5_000):
        client.call("POST", "/v1/outcomes/batch", {"events": due[begin : begin + 5_000]})
    return [(when, event) for when, event in pending if when > until]


def _ensure_experiment(client: KairosClient, key: str, echo) -> dict:
    """The experiment, created if need be, as it was before this run (re)started it."""
    status, found = client.call("GET", f"/v1/experiments/{key}", ok=(200, 404))
    if status == 404:
        _, found = client.call("POST", "/v1/experiments", experiment_body(key))
        echo(f"Created experiment '{key}': {len(VARIANTS)} variants (timing × tone × channel).")
    else:
        echo(f"Reusing experiment '{key}' ({found['status']}).")
    if found["status"] in ("draft", "paused"):
        client.call("POST", f"/v1/experiments/{key}/start")
    elif found["status"] == "concluded":
        raise SimulationError(f"Experiment '{key}' is concluded; pass another --experiment.")
    return found


def _clock_after(experiment: dict) -> datetime:
    """The first simulated hour: the hour after the experiment's latest change, or the current
    hour if that is later.

    A reweight on the simulated clock sets `updated_at` to that clock, so after an earlier run
    it is where that run's clock got to. Starting at the real hour instead would go back in
    time: every assignment would fall before the current allocation period began, and no
    scheduled reweight (due an update interval after the latest one) would come for as long
    as the earlier run lasted.
    """
    changed = datetime.fromisoformat(experiment["updated_at"])
    if changed.tzinfo is None:
        changed = changed.replace(tzinfo=UTC)
    after = changed.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return max(now, after + timedelta(hours=1))


def _event(number: int, sent: dict, metric: str, when: datetime) -> dict:
    return {
        "event_id": f"{sent['assignment_id']}-{metric}-{number}",
        "assignment_id": sent["assignment_id"],
        "metric": metric,
        "occurred_at": when.isoformat(),
    }


def _report(tally: Tally, best: dict, echo) -> None:
    total = sum(tally.units.values())
    saved = tally.uniform_regret - tally.regret
    echo("")
    echo(
        f"Regret (activations lost against an oracle that knew each segment's best message): "
        f"Kairos {tally.regret:.1f}, uniform split {tally.uniform_regret:.1f}, "
        f"oracle 0 — Kairos saved {saved:.1f} activations over {total:,} users."
    )
    echo("")
    echo("Final weights per segment (top 3) and the truth:")
    for segment in sorted(tally.weights):
        weights = sorted(tally.weights[segment].items(), key=lambda kv: -kv[1])[:3]
        tied = [variant_key(v) for v in VARIANTS if true_rate(segment, v) >= best[segment] - 1e-12]
        shown = ", ".join(f"{variant} {weight:.2f}" for variant, weight in weights)
        echo(f"  {segment:<12} {shown}")
        echo(f"  {'':<12} truly best ({best[segment]:.1%}): {' = '.join(tied)}")
    echo("")
    echo("Activation rate per segment, best three arms, as the simulator drew them (some")
    echo("conversions are still on their way to Kairos when the simulation ends):")
    for segment in sorted(BASE):
        arms = [
            (variant, tally.conversions[(s, variant)], n)
            for (s, variant), n in tally.units.items()
            if s == segment and n
        ]
        arms.sort(key=lambda a: -a[1] / a[2])
        for variant, conversions, n in arms[:3]:
            echo(f"  {segment:<12} {variant:<40} {conversions / n:6.1%} of {n:,}")


def _results(client: KairosClient, key: str, echo) -> None:
    """What Kairos's results say: each segment's leader, the suppressions, the advice."""
    _, results = client.call("GET", f"/v1/experiments/{key}/results")
    echo("")
    echo(f"What Kairos's results say ({results['metric']}, {results['method']}):")
    for block in results["segments"]:
        rows = [r for r in block["variants"] if r["prob_best"] is not None]
        leader = max(rows, key=lambda r: r["prob_best"])
        lift = leader["lift"]
        versus = (
            "it is the control"
            if lift is None
            else f"lift vs control {lift['median']:+.0%} (median; "
            f"95%: {lift['ci'][0]:+.0%} to {lift['ci'][1]:+.0%})"
        )
        low, high = leader["rate"]["ci"]
        echo(
            f"  {block['segment']:<12} {leader['variant']:<40} rate {leader['rate']['mean']:.1%} "
            f"({low:.1%}–{high:.1%}), P(best) {leader['prob_best']:.2f}, {versus}"
        )
    _, suppressed = client.call(
        "GET", f"/v1/experiments/{key}/results?metric=suppressed&segment=all"
    )
    rows = [r for r in suppressed["segments"][0]["variants"] if r["variant"]]
    worst = max(rows, key=lambda r: r["rate"]["mean"])
    least = min(rows, key=lambda r: r["rate"]["mean"])
    echo(
        f"  suppressed   most often {worst['variant']} ({worst['rate']['mean']:.1%}), "
        f"least {least['variant']} ({least['rate']['mean']:.1%})"
    )
    advice = results["recommendation"]
    echo(f"  recommendation: {advice['action']} — {advice['reason']}")


def _learnings(client: KairosClient, key: str, echo) -> None:
    """Publish what the experiment showed to the registry, and print what it learned."""
    _, published = client.call("POST", f"/v1/experiments/{key}/learnings", {"tags": ["simulated"]})
    primary = [x for x in published if x["metric"] == "activated"]
    decided = [x for x in primary if x["verdict"] in ("win", "loss")]
    counts = {v: sum(x["verdict"] == v for x in primary) for v in ("win", "loss", "flat")}
    echo("")
    echo(
        f"What the learnings registry learned ({len(published)} learnings published; on "
        f"activated: {counts['win']} wins, {counts['loss']} losses, {counts['flat']} flat, "
        f"{len(primary) - sum(counts.values())} inconclusive):"
    )
    for learning in sorted(decided, key=lambda x: -abs(x["lift"]["mean"] or 0))[:6]:
        echo(f"  {learning['summary']}")
    if not decided:
        echo("  nothing decisive yet: run more hours (--hours) or more users (--users-per-hour).")
    echo(f"  (kairos learnings search --experiment {key} lists them all)")
