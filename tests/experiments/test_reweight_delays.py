"""Reweights count a unit that has not converted yet as part of a failure, by its age; on both
databases, through the real flow (assignments and outcomes over the API)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bandits.delays import failure_shares
from bandits.policies import BetaArms, prob_best
from experiments.allocation import reweight
from experiments.lifecycle import start_experiment
from experiments.snapshot import load_snapshot
from experiments.statistics import bandit_counts
from experiments.statistics.bandit_counts import arm_counts
from experiments.vocabulary import OTHER_SEGMENT
from tests.utils.assignments import start
from tests.utils.delays import (
    HOUR,
    DelayedUnits,
    aa_units,
    store_delayed_units,
    truncated_exponential_cdf,
)
from tests.utils.factories import FACTORIAL, experiment_body, make_experiment

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


def body(key: str = "renewal-reminder", min_weight: float = 0.05) -> dict:
    return experiment_body(
        FACTORIAL,
        key=key,
        factors={"channel": ["email", "push"]},
        control="channel=email",
        attribution_window_hours=72,
        bandit={"update_every_seconds": 3600, "min_weight": min_weight, "min_units_per_arm": 10},
    )


def test_young_units_are_partial_failures_and_closed_windows_full_ones(client, keys, database):
    start(client, keys, body())
    units = [{"unit_id": f"u{i}"} for i in range(400)]
    answers = client.post(
        "/v1/assignments/batch",
        json={"experiment": "renewal-reminder", "units": units, "now": T0.isoformat()},
        headers=keys["admin"],
    ).json["assignments"]
    # One unit in ten converts, 30 minutes after its message.
    events = [
        {
            "event_id": f"e{i}",
            "assignment_id": a["assignment_id"],
            "metric": "renewed",
            "occurred_at": (T0 + timedelta(minutes=30)).isoformat(),
        }
        for i, a in enumerate(answers)
        if i % 10 == 0
    ]
    counts = client.post("/v1/outcomes/batch", json={"events": events}, headers=keys["assign"])
    assert counts.json == {"accepted": 40, "duplicates": 0, "unattributed": 0}

    segments = [OTHER_SEGMENT]
    with database.session() as session:
        snapshot = load_snapshot(session=session, key="renewal-reminder")
        young = arm_counts(
            session=session, snapshot=snapshot, segments=segments, now=T0 + timedelta(hours=1)
        )
        closed = arm_counts(
            session=session, snapshot=snapshot, segments=segments, now=T0 + timedelta(hours=100)
        )
    successes, trials, effective = young
    assert successes.sum() == 40
    assert trials.sum() == 400 - sum(a["holdout"] for a in answers)
    # After an hour, with conversions seen to come within 30 minutes, most of the silent
    # units count as failures, but not all (the prior still allows later conversions).
    assert np.all(successes < effective) and np.all(effective < trials)
    assert effective.sum() > successes.sum() + 0.3 * (trials.sum() - successes.sum())
    # Once the window has closed, every unit is a whole trial.
    assert closed[2] == pytest.approx(closed[1])
    assert closed[1] == pytest.approx(trials)


# Exponential delays of mean 12 h in a 72-hour window, 3,000 conversions a day for three days,
# of which the reweight fits a sample of 3,000: the proportions of its 20,000 at 20,000 a day.
AA = {"days": 3, "units_per_day": 60_000, "rate": 0.05, "mean_delay_hours": 12, "window_hours": 72}
FAVOURED = "channel=email"


def stored_aa_test(session, key: str, seed: int) -> tuple[DelayedUnits, datetime]:
    """An A/A bandit, reweighted hourly, whose arm `FAVOURED` got 80% of the last day."""
    experiment = make_experiment(session, body(key, min_weight=0.01))
    start_experiment(session=session, key=key, now=T0)
    rng = np.random.default_rng(seed)
    units = aa_units(rng, favoured_share_last_day=0.8, **AA)
    now = store_delayed_units(
        session, rng, experiment=experiment, units=units, start=T0, period_hours=1, metric="renewed"
    )
    session.commit()
    return units, now


def test_the_delay_sample_is_chosen_at_assignment_not_by_conversion_time(database, monkeypatch):
    monkeypatch.setattr(bandit_counts, "DELAY_SAMPLE", 3_000)
    with database.session(write=True) as session:
        units, now = stored_aa_test(session, "aa", seed=1)
    seen = int(units.seen(units.hours).sum())
    with database.session() as session:
        snapshot = load_snapshot(session=session, key="aa")
        delay = bandit_counts.delay_distribution(
            session=session, snapshot=snapshot, metric="renewed", now=now, conversions=seen
        )
    truth = truncated_exponential_cdf(12.0, mean=12.0, window=72.0)
    # The latest 3,000 conversions (the sample before) gave G(12 h) = 0.15 here.
    assert 2_700 < delay.count < 3_300
    assert abs(delay.cdf([12 * HOUR])[0] - truth) < 0.03


def oracle_prob_best(units: DelayedUnits) -> float:
    """P(best) of the favoured arm from the conversions seen, each silent unit weighed by the
    true G of its own age: what the reweight would say if it knew the delays' distribution."""
    seen = units.seen(units.hours)
    arrived = truncated_exponential_cdf(
        units.hours - units.assigned_at, mean=AA["mean_delay_hours"], window=AA["window_hours"]
    )
    shares = failure_shares(np.ones(seen.size), seen, arrived)
    conversions = np.bincount(units.arm, weights=seen)
    failures = np.bincount(units.arm, weights=~seen * shares)
    return float(prob_best(BetaArms(1 + conversions, 1 + failures))[0])


@pytest.mark.slow
def test_an_aa_bandit_weighs_a_lately_favoured_arm_as_the_true_delays_would(database, monkeypatch):
    """Its weight follows the P(best) that the true delay distribution gives on the same data
    (whose median over many A/A tests is 1/2: tests/bandits/test_delays.py)."""
    monkeypatch.setattr(bandit_counts, "DELAY_SAMPLE", 3_000)
    favoured, oracle = [], []
    for seed in range(4):
        with database.session(write=True) as session:
            units, now = stored_aa_test(session, f"aa-{seed}", seed)
        with database.session() as session:
            snapshot = load_snapshot(session=session, key=f"aa-{seed}")
            weights = reweight.compute_weights(session=session, snapshot=snapshot, now=now)
        favoured.append(weights[OTHER_SEGMENT][FAVOURED])
        oracle.append(oracle_prob_best(units))
    # Sampled by conversion time, the favoured arm's weight was 0.99 in every one of these
    # (oracle: 0.12, 0.94, 0.42, 0.80). Now within 0.05: G is fitted from 3,000 conversions.
    assert np.max(np.abs(np.subtract(favoured, oracle))) < 0.1
