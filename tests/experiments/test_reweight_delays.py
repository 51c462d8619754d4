"""Reweights count a unit that has not converted yet as part of a failure, by its age; on both
databases, through the real flow (assignments and outcomes over the API)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from experiments.reweight import arm_counts
from experiments.runtime import load_runtime
from experiments.spec import OTHER_SEGMENT
from tests.utils.assignments import start
from tests.utils.factories import FACTORIAL, experiment_body

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


def body():
    return experiment_body(
        FACTORIAL,
        factors={"channel": ["email", "push"]},
        control="channel=email",
        attribution_window_hours=72,
        bandit={"update_every_seconds": 3600, "min_weight": 0.05, "min_units_per_arm": 10},
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
        runtime = load_runtime(session=session, key="renewal-reminder")
        young = arm_counts(
            session=session, runtime=runtime, segments=segments, now=T0 + timedelta(hours=1)
        )
        closed = arm_counts(
            session=session, runtime=runtime, segments=segments, now=T0 + timedelta(hours=100)
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
