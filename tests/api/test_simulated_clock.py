"""A simulated clock (an admin's `now`) on several nodes: after a reweight on any node, every
assignment at a later `now` uses the new period, however long the nodes cache experiments.

The nodes here cache for a minute of real time: the whole test runs within it, as a simulation
runs days in seconds, so only the simulated clock can tell them that a period has changed.
"""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select

from bench.bench_simulated_clock import drive
from experiments.clock import as_utc
from experiments.storage.tables import AllocationPeriod, ArmStats, Experiment
from tests.utils.assignments import assign_batch, set_conversions, start
from tests.utils.factories import FACTORIAL, experiment_body

CACHE_SECONDS = 60
HOUR, DAY, WEEK = timedelta(hours=1), timedelta(days=1), timedelta(days=7)
CONVERSIONS = {"channel=email": 0.02, "channel=push": 0.2, "channel=sms": 0.02}


def bandit(update_every: timedelta) -> dict:
    return experiment_body(
        FACTORIAL,
        factors={"channel": ["email", "push", "sms"]},
        control="channel=email",
        holdout=0,
        bandit={
            "update_every_seconds": int(update_every.total_seconds()),
            "min_weight": 0.05,
            "min_units_per_arm": 20,
        },
    )


def at(moment: datetime) -> str:
    return moment.isoformat()


def assign_at(client, headers, moment: datetime, unit_ids: list[str], via: str) -> list[dict]:
    """Assign these units at a simulated `now`, one request each or in one batch."""
    if via == "batch":
        units = [{"unit_id": u} for u in unit_ids]
        return assign_batch(client, headers, "renewal-reminder", units, now=at(moment))
    answers = []
    for unit_id in unit_ids:
        body = {"experiment": "renewal-reminder", "unit_id": unit_id, "now": at(moment)}
        response = client.post("/v1/assignments", json=body, headers=headers)
        assert response.status_code == 200, response.json
        answers.append(response.json)
    return answers


def reweight_at(client, headers, moment: datetime):
    body = {"now": at(moment)}
    return client.post("/v1/experiments/renewal-reminder/reweight", json=body, headers=headers)


def experiment_row(database) -> Experiment:
    with database.session() as session:
        return session.exec(select(Experiment)).one()


def period_weights(database, number: int) -> dict:
    with database.session() as session:
        return session.exec(
            select(AllocationPeriod.weights).where(AllocationPeriod.number == number)
        ).one()


@pytest.fixture
def two_nodes(nodes):
    """Clients of two nodes that cache experiments for a minute; node B has cached period 1."""

    def make(database, keys, update_every: timedelta):
        a, b = (node.test_client() for node in nodes(2, cache_seconds=CACHE_SECONDS))
        start(a, keys, bandit(update_every))
        clock = datetime.now(UTC) + timedelta(minutes=1)
        first = assign_at(b, keys["admin"], clock, [f"u{i}" for i in range(300)], "batch")
        assert {answer["period"] for answer in first} == {1}
        with database.session(write=True) as session:
            set_conversions(session, "renewal-reminder", "renewed", CONVERSIONS)
        return a, b, clock

    return make


@pytest.mark.parametrize("via", ["single", "batch"])
def test_after_an_on_demand_reweight_on_one_node_the_other_assigns_in_the_new_period(
    database, keys, two_nodes, via
):
    a, b, clock = two_nodes(database, keys, update_every=WEEK)
    response = reweight_at(a, keys["admin"], clock + DAY)
    assert response.status_code == 200, response.json
    period = response.json
    assert period["period"] == 2

    answers = assign_at(b, keys["admin"], clock + DAY + HOUR, [f"n{i}" for i in range(20)], via)
    assert {answer["period"] for answer in answers} == {2}
    for answer in answers:
        assert answer["propensity"] == pytest.approx(
            period["weights"][answer["segment"]][answer["variant"]], abs=1e-6
        )


@pytest.mark.parametrize("via", ["single", "batch"])
def test_after_a_scheduled_reweight_on_one_node_the_other_assigns_in_the_new_period(
    database, keys, two_nodes, via
):
    a, b, _ = two_nodes(database, keys, update_every=DAY)
    due = as_utc(experiment_row(database).next_reweight_at)
    (claimer,) = assign_at(a, keys["admin"], due, ["claimer"], "single")
    assert claimer["period"] == 2
    weights = period_weights(database, 2)

    answers = assign_at(b, keys["admin"], due + HOUR, [f"n{i}" for i in range(20)], via)
    assert {answer["period"] for answer in answers} == {2}
    for answer in answers:
        assert answer["propensity"] == pytest.approx(
            weights[answer["segment"]][answer["variant"]], abs=1e-6
        )


def test_a_reweight_falling_due_after_one_claimed_on_another_node_opens_its_period(
    database, keys, two_nodes
):
    """Node B's request is the first after the next due time: it claims that reweight, and
    opens period 3 from period 2 (not from the period 1 it had cached, which would fail)."""
    a, b, _ = two_nodes(database, keys, update_every=DAY)
    due = as_utc(experiment_row(database).next_reweight_at)
    assert assign_at(a, keys["admin"], due, ["claimer"], "single")[0]["period"] == 2

    (later,) = assign_at(b, keys["admin"], due + DAY + HOUR, ["later"], "single")
    assert later["period"] == 3
    assert experiment_row(database).current_period == 3


def test_an_assignment_before_the_current_period_began_uses_the_current_period(
    database, keys, two_nodes
):
    """A simulated clock may restart (a second simulation run, a backfill): periods are a
    sequence, not a timeline, and an assignment always uses the latest one."""
    a, b, clock = two_nodes(database, keys, update_every=WEEK)
    period = reweight_at(a, keys["admin"], clock + 2 * DAY).json
    assert period["period"] == 2

    answers = assign_at(b, keys["admin"], clock + DAY, [f"n{i}" for i in range(20)], "batch")
    assert {answer["period"] for answer in answers} == {2}
    for answer in answers:
        assert answer["propensity"] == pytest.approx(
            period["weights"][answer["segment"]][answer["variant"]], abs=1e-6
        )


def test_a_reweight_before_the_previous_reweight_is_409_and_changes_nothing(
    database, keys, two_nodes
):
    """Reweights happen in time order: an earlier one would count conversions its clock has
    not reached, and take the units assigned since for just assigned."""
    a, b, clock = two_nodes(database, keys, update_every=WEEK)
    assert reweight_at(a, keys["admin"], clock + 2 * DAY).status_code == 200
    before = experiment_row(database)

    response = reweight_at(b, keys["admin"], clock + DAY)
    assert response.status_code == 409
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert response.json["code"] == 409
    assert "time order" in response.json["errors"]["now"][0]
    after = experiment_row(database)
    assert (after.current_period, after.next_reweight_at) == (2, before.next_reweight_at)
    with database.session() as session:
        assert session.exec(select(func.count()).select_from(AllocationPeriod)).one() == 2


def test_a_backfill_clock_before_the_experiment_started_reweights_from_period_1(
    database, keys, two_nodes
):
    """Period 1 opens at the start, on the real clock, which a backfill's clock precedes."""
    _, b, clock = two_nodes(database, keys, update_every=WEEK)
    response = reweight_at(b, keys["admin"], clock - 30 * DAY)
    assert response.status_code == 200, response.json
    assert response.json["period"] == 2


def test_an_outcome_counts_in_the_period_its_assignment_used_whatever_a_node_cached(
    database, keys, two_nodes
):
    """Attribution reads the period from the assignment row, never from a node's cache: node
    B, which cached period 1, counts a conversion of a period-2 unit in period 2."""
    a, b, clock = two_nodes(database, keys, update_every=WEEK)
    assert reweight_at(a, keys["admin"], clock + DAY).json["period"] == 2
    (late,) = assign_at(a, keys["admin"], clock + DAY + HOUR, ["late"], "single")
    assert late["period"] == 2

    event = {
        "event_id": "late-renewed",
        "experiment": "renewal-reminder",
        "unit_id": "late",
        "metric": "renewed",
        "occurred_at": at(clock + DAY + 2 * HOUR),
    }
    response = b.post("/v1/outcomes", json=event, headers=keys["admin"])
    assert response.json == {"accepted": 1, "duplicates": 0, "unattributed": 0}
    with database.session() as session:
        conversions = session.exec(
            select(ArmStats.conversions).where(
                ArmStats.period == 2,
                ArmStats.segment == late["segment"],
                ArmStats.variant == late["variant"],
                ArmStats.metric == "renewed",
            )
        ).one()
    assert conversions == 1


def test_a_short_drive_with_daily_reweights_on_two_nodes_assigns_no_older_period(keys, nodes):
    """bench/bench_simulated_clock.py's drives, small: two nodes taking turns, a reweight on
    demand every simulated day on the node that does not serve the next batch."""
    clients = [node.test_client() for node in nodes(2, cache_seconds=CACHE_SECONDS)]
    on_demand = drive(
        clients, keys["admin"], steps=8, units_per_step=100, step_hours=12, reweight_every=2
    )
    assert on_demand.assigned_after_reweight == 600
    assert on_demand.older_period == 0
    assert on_demand.periods == 4


def test_a_short_scheduled_drive_on_two_nodes_opens_every_due_period(keys, nodes):
    """The same with a reweight due every simulated hour, as `kairos simulate` drives it."""
    clients = [node.test_client() for node in nodes(2, cache_seconds=CACHE_SECONDS)]
    scheduled = drive(
        clients, keys["admin"], steps=6, units_per_step=200, step_hours=1, reweight_every=None
    )
    assert scheduled.older_period == 0
    assert scheduled.periods == 6
