"""The results service on stored statistics: bandit periods analysed as strata (Simpson's
paradox), the sample-ratio check against each period's weights, and a guardrail at the next
reweight: a conclusive harm switches a bandit's variant off, a trip short of that holds it at
the floor; on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from experiments import results as service
from experiments.lifecycle import start_experiment
from experiments.storage.tables import Experiment
from tests.utils.arm_stats import open_period, store_arm_stats
from tests.utils.assignments import assign_batch, start
from tests.utils.factories import experiment_body, make_experiment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEY = "onboarding-nudge"
BANDIT = {"update_every_seconds": 3600, "min_weight": 0.01, "min_units_per_arm": 10}


def bandit_with_periods(database, period_rows, second_weights, segments=None):
    """A running two-arm bandit whose period 2 assigned with `second_weights` ({segment:
    weights}), and whose statistics are `period_rows`: {(period, segment, variant): (units,
    conversions)}. `segments`: the experiment's, as in its body (None: only `other`)."""
    with database.session(write=True) as session:
        experiment = make_experiment(
            session, allocation="thompson", holdout=0.0, segments=segments, bandit=BANDIT
        )
        start_experiment(session=session, key=KEY, now=T0)
        open_period(session, experiment, 2, second_weights, T0 + timedelta(days=7))
        session.execute(
            update(Experiment).where(Experiment.id == experiment.id).values(current_period=2)
        )
        store_arm_stats(
            session, experiment, period_rows, ("activated", "unsubscribed", "suppressed")
        )
        session.commit()


def test_bandit_periods_are_strata_so_drift_cannot_fake_a_winner(database):
    # Period 1: 50/50 at a 2% base rate. Period 2: the bandit gave evening-email 90% of units
    # while the base rate rose to 10% for both. Within each period the arms are equal.
    bandit_with_periods(
        database,
        {
            (1, "other", "morning-push"): (5000, 100),
            (1, "other", "evening-email"): (5000, 100),
            (2, "other", "morning-push"): (1000, 100),
            (2, "other", "evening-email"): (9000, 900),
        },
        {"other": {"morning-push": 0.1, "evening-email": 0.9}},
    )
    with database.session() as session:
        answer = service.experiment_results(session=session, key=KEY)
    for block in answer["segments"]:
        assert block["stratified"] is True and block["notes"]
        email = next(r for r in block["variants"] if r["variant"] == "evening-email")
        # Pooled, email would be 1000/14000 against 200/6000: P(beat) ≈ 1.
        assert 0.2 < email["prob_beat_control"] < 0.8
        assert email["lift"]["ci"][0] < 0 < email["lift"]["ci"][1]
    assert answer["srm"]["flag"] is False
    assert answer["srm"]["expected"] == {"morning-push": 6000.0, "evening-email": 14000.0}
    assert answer["recommendation"]["action"] == "continue"


def test_units_out_of_line_with_the_weights_flag_a_sample_ratio_mismatch(database):
    bandit_with_periods(
        database,
        {
            (1, "other", "morning-push"): (5000, 100),
            (1, "other", "evening-email"): (4600, 100),
            (2, "other", "morning-push"): (1000, 100),
            (2, "other", "evening-email"): (9000, 900),
        },
        {"other": {"morning-push": 0.1, "evening-email": 0.9}},
    )
    with database.session() as session:
        answer = service.experiment_results(session=session, key=KEY)
    assert answer["srm"]["flag"] is True and answer["srm"]["p_value"] < 0.001
    assert answer["recommendation"]["action"] == "continue"
    assert "Sample ratio mismatch" in answer["recommendation"]["reason"]


def test_the_sample_ratio_is_checked_per_segment_not_on_period_totals(database):
    """Period 2 gave newcomers 20/80 and everyone else 80/20, but each segment's units came
    in the other's shares. The period's totals (1,000 and 1,000) match what its weights give
    in total, so a check on period totals passed it (p = 1.0); per segment it is flagged."""
    bandit_with_periods(
        database,
        {
            (1, "newcomers", "morning-push"): (1000, 20),
            (1, "newcomers", "evening-email"): (1000, 20),
            (1, "other", "morning-push"): (1000, 20),
            (1, "other", "evening-email"): (1000, 20),
            (2, "newcomers", "morning-push"): (800, 16),
            (2, "newcomers", "evening-email"): (200, 4),
            (2, "other", "morning-push"): (200, 4),
            (2, "other", "evening-email"): (800, 16),
        },
        {
            "newcomers": {"morning-push": 0.2, "evening-email": 0.8},
            "other": {"morning-push": 0.8, "evening-email": 0.2},
        },
        segments=[{"key": "newcomers", "rule": {"attribute": "days", "op": "lt", "value": 14}}],
    )
    with database.session() as session:
        answer = service.experiment_results(session=session, key=KEY)
    assert answer["srm"]["expected"] == {"morning-push": 3000.0, "evening-email": 3000.0}
    assert answer["srm"]["flag"] is True and answer["srm"]["p_value"] < 1e-10
    assert "Sample ratio mismatch" in answer["recommendation"]["reason"]


def test_a_conclusive_guardrail_zeroes_the_variant_at_the_next_reweight(client, keys):
    body = experiment_body(allocation="thompson", holdout=0.0, segments=None, bandit=BANDIT)
    start(client, keys, body)
    units = [{"unit_id": f"u{i}"} for i in range(600)]
    answers = assign_batch(client, keys["admin"], KEY, units, now=T0.isoformat())
    events = [
        {
            "event_id": f"unsub-{a['unit_id']}",
            "assignment_id": a["assignment_id"],
            "metric": "unsubscribed",
            "occurred_at": (T0 + timedelta(hours=1)).isoformat(),
        }
        for i, a in enumerate(answers)
        if a["variant"] == "evening-email" and i % 4 == 0
    ]
    response = client.post("/v1/outcomes/batch", json={"events": events}, headers=keys["assign"])
    assert response.status_code == 202 and response.json["accepted"] == len(events)

    response = client.post(
        f"/v1/experiments/{KEY}/reweight",
        json={"now": (T0 + timedelta(hours=2)).isoformat()},
        headers=keys["admin"],
    )
    assert response.status_code == 200, response.json
    assert response.json["weights"]["other"] == {"morning-push": 1.0, "evening-email": 0.0}

    later = [{"unit_id": f"v{i}"} for i in range(300)]
    again = assign_batch(
        client, keys["admin"], KEY, later, now=(T0 + timedelta(hours=3)).isoformat()
    )
    assert {a["variant"] for a in again} == {"morning-push"}
    assert {a["propensity"] for a in again} == {1.0}

    answer = client.get(f"/v1/experiments/{KEY}/results", headers=keys["read"]).json
    assert answer["guardrails"][0]["flag"] is True
    assert answer["recommendation"]["action"] == "stop"
    # The zero weight is expected in the sample-ratio check: no mismatch.
    assert answer["srm"]["flag"] is False


def test_a_tripped_guardrail_short_of_conclusive_holds_the_variant_at_the_floor(client, keys):
    """Tripped (p ≤ 0.05) but not conclusive (p > 0.001): the variant keeps the bandit's floor
    weight through a real reweight, so it still gets the units that could clear it."""
    body = experiment_body(allocation="thompson", holdout=0.0, segments=None, bandit=BANDIT)
    start(client, keys, body)
    units = [{"unit_id": f"u{i}"} for i in range(600)]
    answers = assign_batch(client, keys["admin"], KEY, units, now=T0.isoformat())
    # 20 unsubscribes among about 300 email units, none on push.
    emailed = [a for a in answers if a["variant"] == "evening-email"][:20]
    events = [
        {
            "event_id": f"unsub-{a['unit_id']}",
            "assignment_id": a["assignment_id"],
            "metric": "unsubscribed",
            "occurred_at": (T0 + timedelta(hours=1)).isoformat(),
        }
        for a in emailed
    ]
    response = client.post("/v1/outcomes/batch", json={"events": events}, headers=keys["assign"])
    assert response.status_code == 202 and response.json["accepted"] == 20
    answer = client.get(f"/v1/experiments/{KEY}/results", headers=keys["read"]).json
    (check,) = answer["guardrails"]
    assert check["flag"] is True and check["conclusive"] is False, check
    assert answer["recommendation"]["action"] == "stop"
    assert "floor weight" in answer["recommendation"]["reason"]

    response = client.post(
        f"/v1/experiments/{KEY}/reweight",
        json={"now": (T0 + timedelta(hours=2)).isoformat()},
        headers=keys["admin"],
    )
    assert response.status_code == 200, response.json
    assert response.json["weights"]["other"] == {"morning-push": 0.99, "evening-email": 0.01}

    later = [{"unit_id": f"v{i}"} for i in range(2000)]
    again = assign_batch(
        client, keys["admin"], KEY, later, now=(T0 + timedelta(hours=3)).isoformat()
    )
    email = [a for a in again if a["variant"] == "evening-email"]
    assert 0 < len(email) < 60
    assert {a["propensity"] for a in email} == {0.01}
