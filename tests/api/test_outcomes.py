"""/v1/outcomes: idempotent, attributed within the window, counted once per unit, never dropped,
statistics equal to a rebuild from raw rows; on SQLite and PostgreSQL."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from experiments.statistics import audit as statistics
from experiments.storage.tables import ArmStats, Experiment, Outcome, UnitMetric
from tests.utils.assignments import assign_batch, start
from tests.utils.factories import experiment_body

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REVENUE = {"key": "revenue", "type": "continuous", "role": "secondary"}


def iso(moment: datetime) -> str:
    return moment.isoformat()


@pytest.fixture
def running(client, keys):
    body = experiment_body(
        holdout=0.0, metrics=[*experiment_body()["metrics"], REVENUE], attribution_window_hours=72
    )
    start(client, keys, body)
    return body


def assign(client, keys, unit, now=T0, experiment="onboarding-nudge"):
    response = client.post(
        "/v1/assignments",
        json={"experiment": experiment, "unit_id": unit, "now": iso(now)},
        headers=keys["admin"],
    )
    assert response.status_code == 200, response.json
    return response.json


def send(client, keys, *events):
    response = client.post(
        "/v1/outcomes/batch", json={"events": list(events)}, headers=keys["assign"]
    )
    return response


def event(event_id, unit="u-1", metric="activated", **extra):
    """An event an hour after T0 (when the tests assign), unless told otherwise."""
    extra.setdefault("occurred_at", iso(T0 + timedelta(hours=1)))
    return {
        "event_id": event_id,
        "experiment": "onboarding-nudge",
        "unit_id": unit,
        "metric": metric,
        **extra,
    }


def arm(database, variant, metric, segment="other"):
    with database.session() as session:
        rows = session.exec(
            select(ArmStats).where(
                ArmStats.variant == variant, ArmStats.metric == metric, ArmStats.segment == segment
            )
        ).all()
    assert len(rows) == 1
    return rows[0]


def outcomes(database, **where):
    with database.session() as session:
        query = select(Outcome)
        for name, value in where.items():
            query = query.where(getattr(Outcome, name) == value)
        return session.exec(query).all()


def on_both_nodes(run) -> None:
    """run(0) and run(1) at once, each in its own thread."""
    threads = [threading.Thread(target=run, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def assert_statistics_equal_a_rebuild(database):
    with database.session() as session:
        for experiment in session.exec(select(Experiment)).all():
            assert statistics.differences(session, experiment) == []


def test_one_event_is_attributed_and_counted(client, keys, database, running):
    answer = assign(client, keys, "u-1")
    response = client.post(
        "/v1/outcomes",
        json=event("e-1", occurred_at=iso(T0 + timedelta(hours=2))),
        headers=keys["assign"],
    )
    assert response.status_code == 202, response.json
    assert response.json == {"accepted": 1, "duplicates": 0, "unattributed": 0}
    stats = arm(database, answer["variant"], "activated")
    assert (stats.units, stats.conversions) == (1, 1)
    (stored,) = outcomes(database, event_id="e-1")
    assert stored.attributed and stored.assignment_id == answer["assignment_id"]
    assert_statistics_equal_a_rebuild(database)


def test_a_repeated_event_is_counted_once(client, keys, database, running):
    answer = assign(client, keys, "u-1")
    first = send(client, keys, event("e-1"), event("e-1"), event("e-2", metric="suppressed"))
    assert first.status_code == 202
    assert first.json == {"accepted": 2, "duplicates": 1, "unattributed": 0}
    again = send(
        client, keys, event("e-1"), event("e-2", metric="suppressed"), event("e-3", unit="nobody")
    )
    assert again.json == {"accepted": 1, "duplicates": 2, "unattributed": 1}
    assert len(outcomes(database)) == 3
    assert arm(database, answer["variant"], "activated").conversions == 1
    assert arm(database, answer["variant"], "suppressed").conversions == 1  # reported like any
    assert_statistics_equal_a_rebuild(database)


def test_a_binary_metric_counts_a_unit_once_and_a_continuous_one_sums(
    client, keys, database, running
):
    answer = assign(client, keys, "u-1")
    later = iso(T0 + timedelta(hours=1))
    response = send(
        client,
        keys,
        event("a-1", occurred_at=later),
        event("a-2", occurred_at=later),
        event("r-1", metric="revenue", value=12.5, occurred_at=later),
        event("r-2", metric="revenue", value=7.5, occurred_at=later),
    )
    assert response.json == {"accepted": 4, "duplicates": 0, "unattributed": 0}
    send(client, keys, event("r-3", metric="revenue", value=5, occurred_at=later))
    activated = arm(database, answer["variant"], "activated")
    assert (activated.conversions, activated.sum) == (1, 1.0)
    revenue = arm(database, answer["variant"], "revenue")
    assert revenue.conversions == 1  # units with any revenue
    assert revenue.sum == pytest.approx(25.0)
    assert revenue.sum_squares == pytest.approx(625.0)  # of the unit's total, not of events
    with database.session() as session:
        unit = session.exec(select(UnitMetric).where(UnitMetric.metric == "activated")).one()
    assert (unit.total, unit.events, unit.delay_seconds) == (2.0, 2, 3600.0)
    assert_statistics_equal_a_rebuild(database)


def test_attribution_window_edges(client, keys, database, running):
    assign(client, keys, "u-1")
    window = timedelta(hours=72)
    response = send(
        client,
        keys,
        event("at-start", occurred_at=iso(T0)),
        event("at-end", metric="revenue", value=1, occurred_at=iso(T0 + window)),
        event(
            "too-late", metric="unsubscribed", occurred_at=iso(T0 + window + timedelta(seconds=1))
        ),
        event("too-early", metric="suppressed", occurred_at=iso(T0 - timedelta(seconds=1))),
    )
    assert response.json == {"accepted": 4, "duplicates": 0, "unattributed": 2}
    reasons = {o.event_id: o.reason for o in outcomes(database)}
    assert reasons == {
        "at-start": None,
        "at-end": None,
        "too-late": "after_window",
        "too-early": "before_assignment",
    }
    assert_statistics_equal_a_rebuild(database)


def test_unattributable_events_are_stored_with_their_reason(client, keys, database, running):
    answer = assign(client, keys, "u-1")
    response = send(
        client,
        keys,
        event("no-experiment", experiment="no-such-thing"),
        event("no-unit", unit="never-assigned"),
        event("no-metric", metric="purchased"),
        {"event_id": "no-assignment", "assignment_id": "0" * 32, "metric": "activated"},
        {
            "event_id": "by-id",
            "assignment_id": answer["assignment_id"],
            "metric": "activated",
            "occurred_at": iso(T0),
        },
    )
    assert response.status_code == 202
    assert response.json == {"accepted": 5, "duplicates": 0, "unattributed": 4}
    reasons = {o.event_id: o.reason for o in outcomes(database)}
    assert reasons == {
        "no-experiment": "unknown_experiment",
        "no-unit": "unknown_unit",
        "no-metric": "unknown_metric",
        "no-assignment": "unknown_assignment",
        "by-id": None,
    }
    assert arm(database, answer["variant"], "activated").conversions == 1
    assert_statistics_equal_a_rebuild(database)


def test_an_assignment_and_another_unit_count_for_neither(client, keys, database):
    """An event naming an assignment and a unit that is not the assignment's is stored
    unattributed (`other_unit`): it was counted for the assignment's unit, silently."""
    start(client, keys, experiment_body())
    (answer,) = assign_batch(client, keys["assign"], "onboarding-nudge", [{"unit_id": "u1"}])
    event = {"assignment_id": answer["assignment_id"], "metric": "activated"}
    response = client.post(
        "/v1/outcomes/batch",
        json={
            "events": [
                {**event, "event_id": "mismatch", "unit_id": "someone-else"},
                {**event, "event_id": "match", "unit_id": "u1"},
            ]
        },
        headers=keys["assign"],
    )
    assert response.json == {"accepted": 2, "duplicates": 0, "unattributed": 1}
    reasons = {o.event_id: o.reason for o in outcomes(database)}
    assert reasons == {"mismatch": "other_unit", "match": None}
    assert arm(database, answer["variant"], "activated").conversions == 1
    assert_statistics_equal_a_rebuild(database)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"metric": None}, "events.2.metric"),
        ({"event_id": ""}, "events.2.event_id"),
        ({"value": "a lot"}, "events.2.value"),
        ({"occurred_at": "yesterday"}, "events.2.occurred_at"),
        ({"colour": "blue"}, "events.2.colour"),
        ({"experiment": None}, "events.2.assignment_id"),
    ],
)
def test_one_invalid_event_is_a_422_naming_it_and_nothing_is_stored(
    client, keys, database, running, bad, field
):
    assign(client, keys, "u-1")
    broken = {**event("e-3"), **bad}
    broken = {k: v for k, v in broken.items() if v is not None}
    response = send(client, keys, event("e-1"), event("e-2"), broken)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json
    assert outcomes(database) == []
    assert arm(database, assign(client, keys, "u-1")["variant"], "activated").conversions == 0


def test_batch_shape_errors(client, keys):
    for body in ({}, {"events": []}, {"events": "x"}, {"events": [event("e")] * 10_001}, {"e": 1}):
        response = client.post("/v1/outcomes/batch", json=body, headers=keys["assign"])
        assert response.status_code == 422, body
        assert response.json["code"] == 422
    for path in ("/v1/outcomes", "/v1/outcomes/batch"):
        response = client.post(
            path, data="not json", headers={**keys["assign"], "Content-Type": "application/json"}
        )
        assert (response.status_code, response.json["code"]) == (400, 400)
        response = client.post(path, data="not json", headers=keys["assign"])
        assert (response.status_code, response.json["code"]) == (415, 415)


def test_decision_stickiness_attributes_to_the_latest_decision_before(client, keys, database):
    start(client, keys, experiment_body(stickiness="decision", holdout=0.0))
    first = assign(client, keys, "u-1", now=T0)
    second = assign(client, keys, "u-1", now=T0 + timedelta(hours=5))
    send(
        client,
        keys,
        event("after-first", occurred_at=iso(T0 + timedelta(hours=1))),
        event("after-second", metric="unsubscribed", occurred_at=iso(T0 + timedelta(hours=6))),
    )
    by_event = {o.event_id: o.assignment_id for o in outcomes(database)}
    assert by_event == {
        "after-first": first["assignment_id"],
        "after-second": second["assignment_id"],
    }
    assert_statistics_equal_a_rebuild(database)


def test_holdout_units_outcomes_go_to_the_holdout_arm(client, keys, database):
    start(client, keys, experiment_body(holdout=0.5))
    answers = [assign(client, keys, f"u-{i}") for i in range(40)]
    held = [a for a in answers if a["holdout"]]
    assert held
    send(client, keys, *[event(f"e-{a['unit_id']}", unit=a["unit_id"]) for a in answers])
    assert arm(database, "(holdout)", "activated").conversions == len(held)
    assert_statistics_equal_a_rebuild(database)


def test_concurrent_batches_on_two_nodes_count_each_event_once(
    keys, database, running, client, nodes
):
    units = [f"u-{i}" for i in range(50)]
    for unit in units:
        assign(client, keys, unit)
    nodes = nodes(2)
    # Both nodes receive the same 300 events (50 units × activated, revenue ×2, suppressed…),
    # in different orders, several times, at once.
    events = []
    for i, unit in enumerate(units):
        events += [
            event(f"act-{unit}", unit=unit),
            event(f"rev-a-{unit}", unit=unit, metric="revenue", value=i),
            event(f"rev-b-{unit}", unit=unit, metric="revenue", value=1.5),
            event(f"sup-{unit}", unit=unit, metric="suppressed"),
            event(f"act2-{unit}", unit=unit),
            event(f"stray-{unit}", unit="nobody"),
        ]
    answers: list[dict] = []
    barrier = threading.Barrier(2)

    def run(node: int):
        node_client = nodes[node].test_client()
        ordered = events if node == 0 else events[::-1]
        barrier.wait()
        for _ in range(3):
            for begin in range(0, len(ordered), 37):
                response = send(node_client, keys, *ordered[begin : begin + 37])
                assert response.status_code == 202
                answers.append(response.json)

    on_both_nodes(run)
    assert sum(a["accepted"] for a in answers) == len(events)
    assert sum(a["duplicates"] for a in answers) == 2 * 3 * len(events) - len(events)
    assert sum(a["unattributed"] for a in answers) == len(units)
    assert len(outcomes(database)) == len(events)
    with database.session() as session:
        conversions = sum(
            a.conversions
            for a in session.exec(select(ArmStats).where(ArmStats.metric == "activated"))
        )
        revenue = sum(
            a.sum for a in session.exec(select(ArmStats).where(ArmStats.metric == "revenue"))
        )
    assert conversions == len(units)
    assert revenue == pytest.approx(sum(range(50)) + 1.5 * 50)
    assert_statistics_equal_a_rebuild(database)


def test_events_stored_between_the_look_up_and_the_insert_count_once(
    client, keys, database, running, monkeypatch
):
    """Events are first looked up outside the write lock; one stored by another request in
    between is found by the insert itself (on SQLite, by its count of changes, then again
    event by event)."""
    import experiments.outcomes.ingest as outcomes_module

    for unit in ("u-1", "u-2", "u-3"):
        assign(client, keys, unit)
    first = [event("e-1", unit="u-1"), event("r-1", unit="u-1", metric="revenue", value=2)]
    assert send(client, keys, *first).json["accepted"] == 2
    monkeypatch.setattr(outcomes_module, "stored_event_ids", lambda writer, ids: set())
    again = [
        *first,
        event("e-2", unit="u-2"),
        event("r-2", unit="u-2", metric="revenue", value=5),
        event("e-3", unit="u-3"),
    ]
    answer = send(client, keys, *again).json
    assert answer == {"accepted": 3, "duplicates": 2, "unattributed": 0}
    assert len(outcomes(database)) == 5
    with database.session() as session:
        rows = session.exec(select(ArmStats)).all()
    assert sum(r.conversions for r in rows if r.metric == "activated") == 3
    assert sum(r.sum for r in rows if r.metric == "revenue") == 7
    assert_statistics_equal_a_rebuild(database)


def test_two_nodes_storing_the_same_large_batches_in_opposite_orders_never_fail(
    keys, database, running, client, nodes
):
    """On PostgreSQL, two transactions inserting the same new event ids (or updating the same
    units' totals) in opposite orders wait for each other: a deadlock, which used to answer
    500. Rows are written in key order, and a deadlock that still happens is retried."""
    units = [f"u-{i}" for i in range(400)]
    response = client.post(
        "/v1/assignments/batch",
        json={
            "experiment": "onboarding-nudge",
            "units": [{"unit_id": u} for u in units],
            "now": iso(T0),
        },
        headers=keys["admin"],
    )
    assert response.status_code == 200, response.json
    nodes = nodes(2)
    rounds, answers, failures = 8, [], []
    barrier = threading.Barrier(2)

    def run(node: int):
        node_client = nodes[node].test_client()
        for r in range(rounds):
            events = [
                event(f"r{r}-{kind}-{u}", unit=u, metric=metric, value=1)
                for u in units
                for kind, metric in (("a", "activated"), ("v", "revenue"))
            ]
            ordered = events if node == 0 else events[::-1]
            barrier.wait(timeout=60)
            try:
                response = send(node_client, keys, *ordered)
            except Exception as error:  # the test app raises what a server would answer 500
                failures.append(repr(error))
                continue
            if response.status_code != 202:
                failures.append(response.json)
            else:
                answers.append(response.json)

    on_both_nodes(run)
    assert failures == []
    assert sum(a["accepted"] for a in answers) == rounds * 2 * len(units)
    assert sum(a["duplicates"] for a in answers) == rounds * 2 * len(units)
    assert_statistics_equal_a_rebuild(database)


def test_rebuild_replaces_drifted_statistics(client, keys, database, running):
    assign(client, keys, "u-1")
    send(client, keys, event("e-1"), event("r-1", metric="revenue", value=3))
    with database.session(write=True) as session:
        for row in session.exec(select(ArmStats)).all():
            row.conversions += 7
            session.add(row)
        session.commit()
    with database.session(write=True) as session:
        experiment = session.exec(select(Experiment)).one()
        assert statistics.differences(session, experiment)
        statistics.rebuild(session, experiment)
        session.commit()
    assert_statistics_equal_a_rebuild(database)


def test_cli_checks_and_rebuilds_statistics(client, keys, database, running, runner):
    from api.cli import main

    assign(client, keys, "u-1")
    send(client, keys, event("e-1"))
    result = runner.invoke(main, ["stats", "check", "onboarding-nudge"])
    assert result.exit_code == 0, result.output
    assert "agree" in result.output
    with database.session(write=True) as session:
        row = session.exec(select(ArmStats).where(ArmStats.conversions == 1)).one()
        row.conversions = 5
        session.add(row)
        session.commit()
    result = runner.invoke(main, ["stats", "check", "onboarding-nudge"])
    assert result.exit_code == 1
    assert "1 difference" in result.output
    result = runner.invoke(main, ["stats", "rebuild", "onboarding-nudge"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["stats", "check", "onboarding-nudge"]).exit_code == 0


def test_stats_check_tells_rounding_from_drift_in_large_continuous_values(
    client, keys, database, running, runner
):
    """Sums kept by increments round in proportion to what passed through them: values of a
    billion that cancel out leave 1e-7 in a sum and about 1e2 in a sum of squares. The check
    allows for that, and still sees a lost event."""
    from api.cli import main

    units = [f"buyer-{i}" for i in range(6)]
    for unit in units:
        assign(client, keys, unit)
    first = [event(f"big-{u}", unit=u, metric="revenue", value=999_999_999.9) for u in units]
    second = [
        e
        for u in units
        for e in (
            event(f"back-{u}", unit=u, metric="revenue", value=-999_999_999.9),
            event(f"small-{u}", unit=u, metric="revenue", value=0.3),
        )
    ]
    assert send(client, keys, *first).status_code == 202
    assert send(client, keys, *second).status_code == 202
    result = runner.invoke(main, ["stats", "check", "onboarding-nudge"])
    assert result.exit_code == 0, result.output
    with database.session(write=True) as session:
        row = session.exec(
            select(ArmStats).where(ArmStats.metric == "revenue", ArmStats.sum > 0)
        ).first()
        row.sum += 0.3  # as if one small event had been counted twice
        session.add(row)
        session.commit()
    result = runner.invoke(main, ["stats", "check", "onboarding-nudge"])
    assert result.exit_code == 1, result.output
