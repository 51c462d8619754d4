"""`"prior": "learnings"`: a new experiment starts from the registry's pooled evidence, in its
first reweight and in its conjugate results; on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.api.test_learnings import fill, publish, renewal
from tests.utils.assignments import assign_batch, start
from tests.utils.factories import FACTORIAL, experiment_body

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BANDIT = {"update_every_seconds": 3600, "min_weight": 0.01, "min_units_per_arm": 5}


def first_weights(client, keys, key, **extra):
    body = experiment_body(FACTORIAL, key=key, bandit=BANDIT, **extra)
    created = start(client, keys, body)
    assign_batch(
        client,
        keys["admin"],
        key,
        [{"unit_id": f"{key}-{i}"} for i in range(400)],
        now=T0.isoformat(),
    )
    response = client.post(
        f"/v1/experiments/{key}/reweight",
        json={"now": (T0 + timedelta(hours=1)).isoformat()},
        headers=keys["admin"],
    )
    assert response.status_code == 200, response.json
    return created, response.json["weights"]["other"]


def push_share(weights):
    return sum(w for variant, w in weights.items() if "channel=push" in variant)


def test_a_learned_prior_shapes_the_first_reweight_and_the_results(client, keys):
    renewal(client, keys, "renewal-a", push_every=3)  # push renews 1 in 3, email 1 in 8
    publish(client, keys, "renewal-a")

    learned, weights = first_weights(
        client, keys, "renewal-next", prior="learnings", prior_units=200
    )
    plain, plain_weights = first_weights(client, keys, "renewal-plain")
    assert learned["prior"] == "learnings" and plain["prior"] == "default"
    arms = learned["priors"]["segments"]["other"]["arms"]
    assert learned["priors"]["segments"]["other"]["from_segment"] == "other"
    push = arms["timing=morning,tone=friendly,channel=push"]
    email = arms["timing=morning,tone=friendly,channel=email"]
    assert push[0] + push[1] == pytest.approx(200) and email[0] + email[1] == pytest.approx(200)
    assert push[0] / 200 > 1.8 * email[0] / 200  # the pooled push lift, applied
    # No conversions yet: the plain bandit splits evenly, the learned one favours push.
    # (zero conversions: the split follows unit counts only; 99.9% of such splits fall
    # within 0.36-0.64, simulated)
    assert push_share(plain_weights) == pytest.approx(0.5, abs=0.2)
    assert push_share(weights) > 0.9

    results = client.get("/v1/experiments/renewal-next/results", headers=keys["read"]).json
    assert results["prior"]["source"] == "learnings" and results["prior"]["units"] == 200
    rows = {r["variant"]: r for r in results["segments"][0]["variants"]}
    control = rows["timing=morning,tone=friendly,channel=email"]
    a, b = email
    assert control["rate"]["mean"] == pytest.approx(a / (a + b + control["units"]), rel=1e-6)
    assert rows["timing=morning,tone=friendly,channel=push"]["prob_beat_control"] > 0.99
    assert (
        client.get("/v1/experiments/renewal-plain/results", headers=keys["read"]).json["prior"][
            "source"
        ]
        == "default"
    )


def test_with_nothing_learned_yet_the_prior_stays_the_default(client, keys):
    created, weights = first_weights(client, keys, "renewal-first", prior="learnings")
    assert created["prior"] == "learnings" and created["priors"] is None
    assert push_share(weights) == pytest.approx(0.5, abs=0.2)
    results = client.get("/v1/experiments/renewal-first/results", headers=keys["read"]).json
    assert results["prior"]["source"] == "default"


def test_an_unknown_prior_is_refused(client, keys):
    body = experiment_body(FACTORIAL, key="renewal-x", prior="hunch")
    response = client.post("/v1/experiments", json=body, headers=keys["manage"])
    assert response.status_code == 422 and "prior" in response.json["errors"]


def test_an_experiment_that_started_from_learnings_publishes_its_own_data(client, keys):
    """Its results lean on the registry's prior; its learnings must not hand that prior back
    to the registry as new evidence (nor judge a discovery on it)."""
    renewal(client, keys, "renewal-a", push_every=3)  # push renews 1 in 3, email 1 in 8
    publish(client, keys, "renewal-a")
    body = experiment_body(
        FACTORIAL,
        key="renewal-next",
        allocation="fixed",
        bandit=None,
        prior="learnings",
        prior_units=200,
    )
    start(client, keys, body)
    # Here push and email renew alike, 1 in 8.
    fill(client, keys, "renewal-next", 1_600, lambda a, i: i % 8 == 0, "renewed", prefix="n-")
    results = client.get("/v1/experiments/renewal-next/results", headers=keys["read"]).json
    rows = {r["variant"]: r for r in results["segments"][0]["variants"]}
    assert rows["timing=morning,tone=friendly,channel=push"]["prob_beat_control"] > 0.99
    published = publish(client, keys, "renewal-next")
    (push,) = [
        x
        for x in published
        if (x["segment"], x["metric"], x["factor"]) == ("all", "renewed", "channel")
    ]
    assert push["verdict"] == "inconclusive" and abs(push["log_lift"]["mean"]) < 0.3
    assert "own data" in push["notes"]
    assert "own_data" in push["note_codes"]
    assert len(push["note_codes"]) == len(push["notes"].split("\n"))
