"""/v1/assignments: deterministic, sticky, split as declared, held out, timed; on both databases."""

import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import func
from sqlmodel import select

from api import create_app
from api.assignments.schemas import AssignmentSchema, BatchAnswerSchema
from api.db import get_database, get_snapshot_cache
from api.jsonio import dumps
from bandits.hashing import bucket
from experiments import lifecycle
from experiments.assignment.assign import UnitRequest
from experiments.assignment.assign import assign as assign_units
from experiments.storage.tables import AllocationPeriod, ArmStats, Assignment, Experiment
from tests.utils.assignments import assign_batch, set_conversions, start
from tests.utils.factories import FACTORIAL, experiment_body

NEWCOMER = {"days_since_signup": 3}


def assign(client, headers, unit_id, experiment="onboarding-nudge", **extra):
    body = {"experiment": experiment, "unit_id": unit_id, **extra}
    return client.post("/v1/assignments", json=body, headers=headers)


def count(database, model, **where):
    with database.session() as session:
        query = select(func.count()).select_from(model)
        for field, value in where.items():
            query = query.where(getattr(model, field) == value)
        return session.exec(query).one()


def test_answer_has_the_contract_fields(client, keys):
    start(client, keys, experiment_body())
    response = assign(client, keys["assign"], "u-1", attributes=NEWCOMER, timezone="Europe/Paris")
    assert response.status_code == 200
    answer = response.json
    assert set(answer) == {
        "assignment_id",
        "experiment",
        "unit_id",
        "variant",
        "factors",
        "payload",
        "segment",
        "propensity",
        "period",
        "holdout",
        "send_at",
        "concluded",
    }
    assert answer["experiment"] == "onboarding-nudge"
    assert answer["segment"] == "newcomers"
    assert answer["period"] == 1
    assert answer["concluded"] is False
    if not answer["holdout"]:
        assert answer["variant"] in ("morning-push", "evening-email")
        assert answer["propensity"] == 0.5
        assert answer["send_at"].endswith("+00:00")


def test_same_unit_gets_the_same_stored_answer(client, keys, database):
    start(client, keys, experiment_body())
    first = assign(client, keys["assign"], "u-1").json
    again = assign(client, keys["assign"], "u-1", attributes=NEWCOMER).json
    assert again["assignment_id"] == first["assignment_id"]
    assert (again["variant"], again["segment"]) == (first["variant"], first["segment"])
    assert count(database, Assignment) == 1


def test_variant_is_the_hash_of_the_period_seed_on_every_instance(app, keys, database_url):
    # Two app instances (two "nodes", each its own engine) assign different new units; each
    # answer is what the stored seed and weights dictate, not anything process-local.
    other = create_app(
        {
            "KAIROS_DATABASE_URL": database_url,
            "SECRET_KEY": "s",
            "TESTING": True,
            "KAIROS_CACHE_SECONDS": 0,
        }
    )
    first, second = app.test_client(), other.test_client()
    start(first, keys, experiment_body(holdout=0))
    with other.app_context():
        from api.db import get_database

        with get_database().session() as session:
            period = session.exec(select(AllocationPeriod)).one()
    for index in range(200):
        client = first if index % 2 else second
        answer = assign(client, keys["assign"], f"unit-{index}").json
        expected = "morning-push" if bucket(period.seed, f"unit-{index}") < 0.5 else "evening-email"
        assert answer["variant"] == expected
    with other.app_context():
        get_database().dispose()


@pytest.fixture
def fixed_seeds(monkeypatch):
    """Hash seeds from a seeded generator, so that the proportion tests below are exact
    replays: with fresh random seeds, a 0.001 threshold fails one run in a thousand."""
    rng = random.Random(20261123)
    monkeypatch.setattr(lifecycle, "new_seed", lambda: rng.getrandbits(31))


def test_fixed_split_follows_the_declared_weights(client, keys, fixed_seeds):
    body = experiment_body(holdout=0)
    body["variants"][0]["weight"] = 0.2
    body["variants"][1]["weight"] = 0.8
    start(client, keys, body)
    answers = assign_batch(
        client, keys["assign"], "onboarding-nudge", [{"unit_id": f"u{i}"} for i in range(20_000)]
    )
    counts = Counter(a["variant"] for a in answers)
    observed = [counts["morning-push"], counts["evening-email"]]
    assert stats.chisquare(observed, [4_000, 16_000]).pvalue > 0.001
    assert {a["propensity"] for a in answers if a["variant"] == "morning-push"} == {0.2}


def test_holdout_share_and_its_propensity(client, keys, database, fixed_seeds):
    start(client, keys, experiment_body(holdout=0.1))
    answers = assign_batch(
        client, keys["assign"], "onboarding-nudge", [{"unit_id": f"u{i}"} for i in range(20_000)]
    )
    held = [a for a in answers if a["holdout"]]
    assert stats.binomtest(len(held), 20_000, 0.1).pvalue > 0.001
    assert all(a["variant"] is None and a["payload"] is None for a in held)
    assert {a["propensity"] for a in held} == {0.1}
    assert count(database, Assignment, holdout=True) == len(held)


def test_decision_stickiness_gives_fresh_decisions(client, keys, database):
    start(client, keys, experiment_body(stickiness="decision", holdout=0))
    answers = [assign(client, keys["assign"], "same-unit").json for _ in range(200)]
    assert len({a["assignment_id"] for a in answers}) == 200
    variants = Counter(a["variant"] for a in answers)
    # Each decision hashes its own (time-stamped, random) id, so this one cannot be replayed:
    # a threshold of 1e-6 still catches any real bias (one variant every time: p ≈ 1e-60).
    assert stats.binomtest(variants["morning-push"], 200, 0.5).pvalue > 1e-6
    assert count(database, Assignment) == 200


def test_batch_answers_in_request_order_and_repeats_agree(client, keys, database):
    start(client, keys, experiment_body())
    units = [{"unit_id": f"u{i % 50}", "attributes": NEWCOMER if i % 3 else {}} for i in range(150)]
    answers = assign_batch(client, keys["assign"], "onboarding-nudge", units)
    assert [a["unit_id"] for a in answers] == [u["unit_id"] for u in units]
    by_unit = {}
    for answer in answers:
        by_unit.setdefault(answer["unit_id"], set()).add(answer["assignment_id"])
    assert all(len(ids) == 1 for ids in by_unit.values())
    assert count(database, Assignment) == 50


def test_segments_follow_the_rules(client, keys):
    start(client, keys, experiment_body())
    assert assign(client, keys["assign"], "a", attributes=NEWCOMER).json["segment"] == "newcomers"
    assert (
        assign(client, keys["assign"], "b", attributes={"days_since_signup": 40}).json["segment"]
        == "other"
    )
    assert assign(client, keys["assign"], "c").json["segment"] == "other"


def test_units_are_counted_per_arm_for_every_metric(client, keys, database):
    start(client, keys, experiment_body())
    answers = assign_batch(
        client,
        keys["assign"],
        "onboarding-nudge",
        [{"unit_id": f"u{i}", "attributes": NEWCOMER} for i in range(300)],
    )
    assign(client, keys["assign"], "u1")  # a repeat counts nothing
    with database.session() as session:
        rows = session.exec(select(ArmStats)).all()
    expected = Counter(a["variant"] or "(holdout)" for a in answers)
    for metric in ("activated", "unsubscribed", "suppressed"):
        counted = {r.variant: r.units for r in rows if r.metric == metric}
        assert counted == dict(expected)


def test_send_at_uses_the_time_zone_and_quiet_hours(client, keys):
    start(client, keys, experiment_body(holdout=0))
    answer = assign(
        client, keys["admin"], "u-1", timezone="America/New_York", now="2026-01-15T12:00:00Z"
    ).json
    expected = {
        "morning-push": "2026-01-15T14:00:00+00:00",
        "evening-email": "2026-01-16T00:00:00+00:00",
    }
    assert answer["send_at"] == expected[answer["variant"]]


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        # Quiet hours 21-8: 19:00 Paris in January is 18:00 UTC; 9:00 is 08:00 UTC.
        (
            "Europe/Paris",
            {
                "morning-push": "2026-01-16T08:00:00+00:00",
                "evening-email": "2026-01-15T18:00:00+00:00",
            },
        ),
        (
            None,
            {
                "morning-push": "2026-01-16T09:00:00+00:00",
                "evening-email": "2026-01-15T19:00:00+00:00",
            },
        ),
    ],
    ids=["the experiment's time zone", "UTC by default"],
)
def test_a_unit_without_a_time_zone_is_where_the_experiment_says(client, keys, timezone, expected):
    """send_at is never null for a local-hour message: units that give no time zone are in
    the experiment's (`timezone`, default UTC); a unit's own time zone still wins."""
    start(client, keys, experiment_body(holdout=0, timezone=timezone))
    now = "2026-01-15T12:00:00Z"
    for unit in range(8):
        answer = assign(client, keys["admin"], f"u-{unit}", now=now).json
        assert answer["send_at"] == expected[answer["variant"]]
    own = assign(client, keys["admin"], "u-ny", timezone="America/New_York", now=now).json
    assert (
        own["send_at"]
        == {
            "morning-push": "2026-01-15T14:00:00+00:00",
            "evening-email": "2026-01-16T00:00:00+00:00",
        }[own["variant"]]
    )


def test_an_experiment_in_an_unknown_time_zone_is_refused(client, keys):
    for timezone in ("Mars/Olympus", "Europe/Paris\n", "../etc/passwd"):
        body = experiment_body(timezone=timezone)
        response = client.post("/v1/experiments", json=body, headers=keys["manage"])
        assert response.status_code == 422, response.json
        assert "timezone" in response.json["errors"]


def test_unknown_time_zone_is_422_and_stores_nothing(client, keys, database):
    start(client, keys, experiment_body())
    response = assign(client, keys["assign"], "u-1", timezone="Mars/Olympus")
    assert response.status_code == 422
    assert "Mars/Olympus" in response.json["message"]
    batch = client.post(
        "/v1/assignments/batch",
        headers=keys["assign"],
        json={
            "experiment": "onboarding-nudge",
            "units": [{"unit_id": "a"}, {"unit_id": "b", "timezone": "Nowhere/Land"}],
        },
    )
    assert batch.status_code == 422
    assert "units.1.timezone" in batch.json["errors"]
    assert count(database, Assignment) == 0


def test_now_is_honoured_for_admin_keys_only(client, keys):
    start(client, keys, experiment_body(holdout=0, stickiness="decision"))
    admin = assign(client, keys["admin"], "u", timezone="UTC", now="2030-06-01T10:00:00Z").json
    other = assign(client, keys["assign"], "u", timezone="UTC", now="2030-06-01T10:00:00Z").json
    assert admin["send_at"].startswith("2030-06-0")
    assert not other["send_at"].startswith("2030")


@pytest.mark.parametrize("action", [None, "pause"])
def test_draft_or_paused_experiment_is_409(client, keys, action):
    client.post("/v1/experiments", json=experiment_body(), headers=keys["manage"])
    if action:
        client.post("/v1/experiments/onboarding-nudge/start", headers=keys["manage"])
        client.post(f"/v1/experiments/onboarding-nudge/{action}", headers=keys["manage"])
    response = assign(client, keys["assign"], "u-1")
    assert response.status_code == 409
    assert "running" in response.json["message"]


def test_unknown_experiment_is_404(client, keys):
    assert assign(client, keys["assign"], "u-1", experiment="nope").status_code == 404


def test_concluded_experiment_answers_the_winner_and_logs_nothing(client, keys, database):
    start(client, keys, experiment_body())
    assign(client, keys["assign"], "u-1")
    client.post(
        "/v1/experiments/onboarding-nudge/conclude",
        json={"winner": "evening-email"},
        headers=keys["manage"],
    )
    answers = [assign(client, keys["assign"], f"u-{i}").json for i in range(20)]
    assert {a["variant"] for a in answers} == {"evening-email"}
    assert all(a["concluded"] and a["assignment_id"] is None for a in answers)
    assert count(database, Assignment) == 1


def test_answers_serialised_straight_are_the_bytes_of_their_schemas_dump(app, client, keys):
    """The batch view (and the fast lane, tests/api/test_fastlane.py) serialise the answers'
    dataclasses without a schema: the bytes are those of BatchAnswerSchema's (and
    AssignmentSchema's) dump, over held-out units, timed sends in several zones and segments,
    fresh decisions and a concluded experiment."""
    variants = experiment_body()["variants"]
    variants[1]["payload"] = {"template": "nudge_b", "send": {"delay_minutes": 90}}
    start(client, keys, experiment_body(stickiness="decision", holdout=0.3, variants=variants))
    zones = [None, "Europe/Paris", "America/New_York", "Asia/Kolkata"]
    units = [
        UnitRequest(f"u-{i}", NEWCOMER if i % 2 else None, zones[i % len(zones)]) for i in range(60)
    ]
    moment = datetime(2030, 1, 1, 20, 59, 59, 123456, tzinfo=UTC)
    answers = []
    with app.app_context():

        def assign_all():
            return assign_units(
                database=get_database(),
                cache=get_snapshot_cache(),
                experiment_key="onboarding-nudge",
                units=units,
                now=moment,
            )

        answers += assign_all() + assign_all()  # decision stickiness: fresh decisions
        response = client.post("/v1/experiments/onboarding-nudge/conclude", headers=keys["manage"])
        assert response.status_code == 200
        answers += assign_all()
    assert {a.holdout for a in answers} == {True, False}
    assert {a.concluded for a in answers} == {True, False}
    assert {a.segment for a in answers} == {"newcomers", "other"}
    assert {a.send_at is None for a in answers} == {True, False}
    assert dumps({"assignments": answers}) == dumps(
        BatchAnswerSchema().dump({"assignments": answers})
    )
    for answer in answers:
        assert dumps(answer) == dumps(AssignmentSchema().dump(answer))


@pytest.mark.parametrize(
    ("units", "field"),
    [
        ([{"unit_id": "a"}, {"unit_id": ""}], "units.1.unit_id"),
        ([{"unit_id": "a"}, {"user": "b"}], "units.1.unit_id"),
        ([{"unit_id": 5}], "units.0.unit_id"),
        ([{"unit_id": "a", "attributes": [1]}], "units.0.attributes"),
        ([{"unit_id": "a", "colour": "red"}], "units.0.colour"),
        (["a"], "units.0"),
        ([], "units"),
        ([{"unit_id": f"u{i}"} for i in range(10_001)], "units"),
    ],
    ids=[
        "empty id",
        "no id",
        "number id",
        "bad attributes",
        "unknown field",
        "not an object",
        "no units",
        "too many",
    ],
)
def test_invalid_batch_is_422_naming_the_unit_and_stores_nothing(
    client, keys, database, units, field
):
    start(client, keys, experiment_body())
    response = client.post(
        "/v1/assignments/batch",
        headers=keys["assign"],
        json={"experiment": "onboarding-nudge", "units": units},
    )
    assert response.status_code == 422
    assert field in response.json["errors"], response.json["errors"]
    assert count(database, Assignment) == 0


def test_reweight_waits_for_min_units_per_arm(client, keys):
    start(client, keys, experiment_body(FACTORIAL))
    response = client.post(
        "/v1/experiments/renewal-reminder/reweight", json={}, headers=keys["manage"]
    )
    assert response.status_code == 409
    assert "min_units_per_arm" in response.json["message"]


def test_reweight_of_a_fixed_split_is_409(client, keys):
    start(client, keys, experiment_body())
    response = client.post(
        "/v1/experiments/onboarding-nudge/reweight", json={}, headers=keys["manage"]
    )
    assert response.status_code == 409


def thompson_body(**overrides):
    fields = {
        "factors": {"channel": ["email", "push", "sms"]},
        "control": "channel=email",
        "segments": [
            {
                "key": "newcomers",
                "rule": {"attribute": "days_since_signup", "op": "lt", "value": 14},
            }
        ],
        "bandit": {"update_every_seconds": 3600, "min_weight": 0.05, "min_units_per_arm": 100},
        "holdout": 0.05,
    }
    return experiment_body(FACTORIAL, **{**fields, **overrides})


def test_reweight_moves_weight_to_the_better_arm_with_floor_and_new_seed(client, keys, database):
    start(client, keys, thompson_body())
    before = assign_batch(
        client,
        keys["assign"],
        "renewal-reminder",
        [{"unit_id": f"u{i}", "attributes": {"days_since_signup": i % 30}} for i in range(3_000)],
    )
    with database.session(write=True) as session:
        set_conversions(
            session,
            "renewal-reminder",
            "renewed",
            {"channel=email": 0.05, "channel=push": 0.12, "channel=sms": 0.04},
        )
    # Reweighted once every window has closed: no unit is still young (delay-aware counting
    # has its own test in tests/experiments/test_reweight_delays.py).
    later = (datetime.now(UTC) + timedelta(hours=73)).isoformat()
    response = client.post(
        "/v1/experiments/renewal-reminder/reweight", json={"now": later}, headers=keys["admin"]
    )
    assert response.status_code == 200, response.json
    period = response.json
    assert period["period"] == 2
    for segment in ("newcomers", "other"):
        weights = period["weights"][segment]
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
        assert min(weights.values()) >= 0.05 - 1e-6
        assert max(weights, key=weights.get) == "channel=push"
    with database.session() as session:
        seeds = [p.seed for p in session.exec(select(AllocationPeriod)).all()]
    assert len(set(seeds)) == 2

    # New units get period 2 with the propensity the new weights give their segment; units
    # already assigned keep their first answer; the holdout does not move.
    after = assign_batch(
        client,
        keys["assign"],
        "renewal-reminder",
        [{"unit_id": f"u{i}", "attributes": {"days_since_signup": i % 30}} for i in range(6_000)],
    )
    assert [a["assignment_id"] for a in after[:3_000]] == [a["assignment_id"] for a in before]
    fresh = [a for a in after[3_000:] if not a["holdout"]]
    assert {a["period"] for a in fresh} == {2}
    for answer in fresh:
        assert answer["propensity"] == pytest.approx(
            period["weights"][answer["segment"]][answer["variant"]], abs=1e-5
        )
    push = sum(a["variant"] == "channel=push" for a in fresh) / len(fresh)
    assert push > 0.8


def test_holdout_membership_does_not_change_with_reweights(client, keys, database):
    start(client, keys, thompson_body(stickiness="decision"))
    units = [{"unit_id": f"u{i}"} for i in range(2_000)]
    before = assign_batch(client, keys["assign"], "renewal-reminder", units)
    with database.session(write=True) as session:
        set_conversions(session, "renewal-reminder", "renewed", {"channel=sms": 0.2})
    client.post("/v1/experiments/renewal-reminder/reweight", json={}, headers=keys["manage"])
    after = assign_batch(client, keys["assign"], "renewal-reminder", units)
    assert [a["holdout"] for a in after] == [b["holdout"] for b in before]
    assert {a["period"] for a in after} == {2}


def test_scheduled_reweight_happens_on_the_first_request_after_it_is_due(client, keys, database):
    start(client, keys, thompson_body(holdout=0))
    assign_batch(
        client, keys["assign"], "renewal-reminder", [{"unit_id": f"u{i}"} for i in range(600)]
    )
    with database.session() as session:
        experiment = session.exec(select(Experiment)).one()
    due = experiment.next_reweight_at
    early = assign(
        client,
        keys["admin"],
        "early",
        experiment="renewal-reminder",
        now=(due.replace(microsecond=0)).isoformat().replace("+00:00", "Z"),
    ).json
    # One second before the due time nothing happens (the clock is simulated by `now`)…
    assert early["period"] in (1, 2)
    later = assign(
        client, keys["admin"], "later", experiment="renewal-reminder", now="2099-12-31T00:00:00Z"
    ).json
    assert later["period"] == 2
    again = assign(
        client, keys["admin"], "again", experiment="renewal-reminder", now="2099-12-31T00:00:01Z"
    ).json
    assert again["period"] == 2  # …and it is not due again for update_every_seconds


def test_two_nodes_assigning_the_same_new_units_at_once_agree(app, keys, database, nodes):
    start(app.test_client(), keys, experiment_body())
    nodes = nodes(2)
    units = [f"race-{i}" for i in range(60)]
    answers: dict[int, list] = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def run(node: int):
        client = nodes[node].test_client()
        barrier.wait()
        for unit in units:
            answers[node].append(assign(client, keys["assign"], unit).json)

    threads = [threading.Thread(target=run, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a["assignment_id"] for a in answers[0]] == [a["assignment_id"] for a in answers[1]]
    assert count(database, Assignment) == len(units)
    with database.session() as session:
        units_counted = session.exec(
            select(func.sum(ArmStats.units)).where(ArmStats.metric == "activated")
        ).one()
    assert units_counted == len(units)


def test_propensity_of_fixed_split_matches_weights_in_every_segment(client, keys):
    start(client, keys, experiment_body(holdout=0))
    answers = assign_batch(
        client,
        keys["assign"],
        "onboarding-nudge",
        [{"unit_id": f"u{i}", "attributes": {"days_since_signup": i % 28}} for i in range(1_000)],
    )
    assert {a["propensity"] for a in answers} == {0.5}
    assert np.isclose(np.mean([a["segment"] == "newcomers" for a in answers]), 0.5, atol=0.01)


def test_assignment_ids_are_unique_and_in_time_order(client, keys):
    """Ids lead with the time (UUIDv7's layout) so that inserts append to the index."""
    from experiments.assignment.assign import new_ids

    ids = new_ids(10_000)
    assert len(set(ids)) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    later = new_ids(1)[0]
    assert later[:12] >= ids[0][:12]
    start(client, keys, experiment_body())
    first = assign(client, keys["assign"], "u-1").json["assignment_id"]
    second = assign(client, keys["assign"], "u-2").json["assignment_id"]
    assert first[:12] <= second[:12]
