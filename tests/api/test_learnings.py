"""The learnings registry over HTTP: publication from factorial and non-factorial experiments,
verdicts, idempotent republishing, hand-written learnings, every filter, text search, sorting,
the pooled evidence across experiments; on SQLite and PostgreSQL."""

import math
import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from analysis.evidence import Study, random_effects
from api.jsonio import json_response
from experiments import lifecycle, workflows
from experiments.errors import Conflict
from experiments.learnings.evidence import evidence
from tests.utils.assignments import assign_batch, start
from tests.utils.factories import FACTORIAL, experiment_body

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def fill(client, keys, key, n, converts, metric, prefix="u"):
    """Assign n units of `key`; report `metric` for those `converts(answer, i)` picks."""
    answers = assign_batch(
        client,
        keys["admin"],
        key,
        [
            {"unit_id": f"{prefix}{i}", "attributes": {"days_since_signup": 3 if i % 2 else 40}}
            for i in range(n)
        ],
        now=T0.isoformat(),
    )
    events = [
        {
            "event_id": f"{key}-{metric}-{a['unit_id']}",
            "assignment_id": a["assignment_id"],
            "metric": metric,
            "occurred_at": (T0 + timedelta(hours=1)).isoformat(),
        }
        for i, a in enumerate(answers)
        if converts(a, i)
    ]
    response = client.post("/v1/outcomes/batch", json={"events": events}, headers=keys["assign"])
    assert response.status_code == 202, response.json
    return answers


def publish(client, keys, key, **body):
    response = client.post(f"/v1/experiments/{key}/learnings", json=body, headers=keys["manage"])
    assert response.status_code == 201, response.json
    return response.json


def query(client, keys, **params):
    response = client.get("/v1/learnings", query_string=params, headers=keys["read"])
    assert response.status_code == 200, response.json
    return response.json


def onboarding(client, keys):
    start(client, keys, experiment_body(holdout=0.0))
    # evening-email converts 1 in 4 (newcomers and others alike), morning-push 1 in 10.
    fill(
        client,
        keys,
        "onboarding-nudge",
        2_000,
        lambda a, i: (i // 2) % (4 if a["variant"] == "evening-email" else 10) == 0,
        "activated",
    )


def renewal(client, keys, key="renewal-reminder", push_every=3, n=3_200):
    start(client, keys, experiment_body(FACTORIAL, key=key, allocation="fixed", bandit=None))
    fill(
        client,
        keys,
        key,
        n,
        lambda a, i: i % (push_every if "channel=push" in a["variant"] else 8) == 0,
        "renewed",
        prefix=f"{key}-",
    )


def test_variant_learnings_from_a_non_factorial_experiment(client, keys, monkeypatch):
    # The hash seeds decide the arms' counts, hence the p-values: fixed, so that the test is
    # the same every run (over random seeds the p-value below exceeds 0.001 in 1.3% of runs).
    rng = random.Random(20261129)
    monkeypatch.setattr(lifecycle, "new_seed", lambda: rng.getrandbits(31))
    onboarding(client, keys)
    published = publish(client, keys, "onboarding-nudge")
    # 3 segments (all, newcomers, other) × 3 binary metrics × 1 variant vs control.
    assert len(published) == 9
    (email,) = [x for x in published if x["segment"] == "newcomers" and x["metric"] == "activated"]
    assert (email["factor"], email["level"], email["baseline_level"]) == (
        "variant",
        "evening-email",
        "morning-push",
    )
    assert email["experiment"] == "onboarding-nudge" and email["source"] == "published"
    assert email["verdict"] == "win" and email["prob_better"] > 0.999
    assert email["lift"]["ci"][0] < email["lift"]["mean"] < email["lift"]["ci"][1]
    assert email["channel"] == "email" and email["method"] == "beta-binomial"
    assert email["units"] == 1_000
    assert email["summary"].startswith(
        "For newcomers, 'evening-email' beat the control 'morning-push' on activated by +"
    )
    assert email["summary"].endswith(", 1,000 users.") and "probability 1.000" in email["summary"]
    # A discovery among the publication's 9 comparisons, on log(p_email / p_push).
    assert email["discovery"]["comparisons"] == 9
    assert email["discovery"]["false_discovery_rate"] == 0.05
    # e-BH at 5%: each of the k wins and losses has an always-valid p of at most 5% × k / 9.
    # (Its size varies with the experiment's random hash seeds: 0.0011 and 0.0018 were seen.)
    discoveries = sum(x["verdict"] in ("win", "loss") for x in published)
    assert email["discovery"]["always_valid_p"] <= 0.05 * discoveries / 9
    low, high = (math.log1p(x) for x in email["lift"]["ci"])
    assert low < email["log_lift"]["mean"] < high and 0 < email["log_lift"]["sd"] < high - low
    # No unsubscribes at all: nothing to tell apart.
    assert {x["verdict"] for x in published if x["metric"] == "unsubscribed"} == {"inconclusive"}


def test_factor_learnings_from_a_factorial_experiment(client, keys):
    renewal(client, keys)
    published = publish(client, keys, "renewal-reminder")
    overall = {
        (x["factor"], x["level"]): x
        for x in published
        if x["segment"] == "all" and x["metric"] == "renewed"
    }
    assert set(overall) == {("timing", "evening"), ("tone", "urgent"), ("channel", "push")}
    push = overall[("channel", "push")]
    assert push["baseline_level"] == "email" and push["channel"] == "push"
    assert push["verdict"] == "win" and push["lift"]["mean"] > 1.0
    assert push["summary"].startswith("Across all users, push beat email on renewed by +")


def test_republishing_replaces_and_thresholds_decide_verdicts(client, keys, database):
    onboarding(client, keys)
    first = publish(client, keys, "onboarding-nudge")
    again = publish(client, keys, "onboarding-nudge")
    assert len(again) == len(first)
    assert query(client, keys, experiment="onboarding-nudge", source="published") == again[
        ::-1
    ] or len(query(client, keys, experiment="onboarding-nudge")) == len(first)
    strict = publish(client, keys, "onboarding-nudge", win_probability=0.9999999, flat_margin=0.5)
    verdicts = {x["verdict"] for x in strict if x["metric"] == "unsubscribed"}
    assert verdicts == {"flat"} or verdicts == {"inconclusive"}
    assert len(query(client, keys, experiment="onboarding-nudge")) == len(first)
    for field, value in (("win_probability", 0.3), ("false_discovery_rate", 0)):
        bad = client.post(
            "/v1/experiments/onboarding-nudge/learnings",
            json={field: value},
            headers=keys["manage"],
        )
        assert bad.status_code == 422 and field in bad.json["errors"]
    lenient = publish(client, keys, "onboarding-nudge", false_discovery_rate=0.2)
    assert {x["discovery"]["false_discovery_rate"] for x in lenient} == {0.2}


def test_republishing_keeps_the_earlier_publications_tags(client, keys):
    onboarding(client, keys)
    publish(client, keys, "onboarding-nudge", tags=["simulated", "q1"])
    again = publish(client, keys, "onboarding-nudge", tags=["q1-2026", "q1"])
    assert {tuple(x["tags"]) for x in again} == {("simulated", "q1", "q1-2026")}
    assert len(query(client, keys, tag="simulated")) == len(again)
    # Concluding republishes without tags: the tags stay.
    response = client.post("/v1/experiments/onboarding-nudge/conclude", headers=keys["manage"])
    assert response.status_code == 200
    stored = query(client, keys, experiment="onboarding-nudge")
    assert len(stored) == len(again)
    assert {tuple(x["tags"]) for x in stored} == {("simulated", "q1", "q1-2026")}


def test_concluding_publishes_the_learnings(client, keys):
    onboarding(client, keys)
    response = client.post(
        "/v1/experiments/onboarding-nudge/conclude",
        json={"winner": "evening-email"},
        headers=keys["manage"],
    )
    assert response.status_code == 200
    assert len(query(client, keys, experiment="onboarding-nudge")) == 9


def test_a_conclusion_whose_learnings_cannot_be_published_is_not_stored(client, keys, monkeypatch):
    """The answer describes what was stored: a 409 leaves the experiment running."""
    onboarding(client, keys)

    def refuse(**_):
        raise Conflict("Learnings of 'onboarding-nudge' were being published; retry.")

    monkeypatch.setattr(workflows, "publish", refuse)
    response = client.post("/v1/experiments/onboarding-nudge/conclude", headers=keys["manage"])
    assert response.status_code == 409
    read = client.get("/v1/experiments/onboarding-nudge", headers=keys["read"]).json
    assert (read["status"], read["winner"], read["concluded_at"]) == ("running", None, None)
    assert query(client, keys, experiment="onboarding-nudge") == []


def test_a_conclusion_that_collides_with_a_publication_runs_again(client, keys, monkeypatch):
    onboarding(client, keys)
    publish_for_real, collisions = workflows.publish, []

    def collide_once(**kwargs):
        if not collisions:
            collisions.append(1)
            publish_for_real(**kwargs)
            raise IntegrityError("INSERT INTO learning", {}, Exception("unique index"))
        return publish_for_real(**kwargs)

    monkeypatch.setattr(workflows, "publish", collide_once)
    response = client.post("/v1/experiments/onboarding-nudge/conclude", headers=keys["manage"])
    assert response.status_code == 200, response.json
    assert response.json["status"] == "concluded"
    assert len(query(client, keys, experiment="onboarding-nudge")) == 9


def test_hand_written_learnings_every_filter_text_search_and_sorting(client, keys):
    onboarding(client, keys)
    publish(client, keys, "onboarding-nudge", tags=["q1-2026"])
    manual = client.post(
        "/v1/learnings",
        json={
            "summary": "Interviews: renewers read reminders on their morning commute.",
            "notes": "Twelve interviews with annual subscribers; most open push before 9.",
            "segment": "renewers",
            "factor": "timing",
            "level": "morning",
            "channel": "push",
            "verdict": "win",
            "lift": {"mean": 0.1, "ci": [0.0, 0.2]},
            "tags": ["research", "interviews"],
            "links": ["https://wiki.example.com/research/renewers"],
        },
        headers=keys["manage"],
    )
    assert manual.status_code == 201, manual.json
    assert manual.json["source"] == "manual" and manual.json["experiment"] is None
    assert manual.json["note_codes"] == []  # a person's words have no code

    def ids(**params):
        return {x["id"] for x in query(client, keys, **params)}

    everything = ids()
    assert len(everything) == 10
    assert ids(segment="renewers") == {manual.json["id"]}
    assert len(ids(metric="activated")) == 3
    assert len(ids(factor="variant")) == 9 and ids(factor="timing") == {manual.json["id"]}
    assert len(ids(level="evening-email")) == 9 and ids(level="morning") == {manual.json["id"]}
    assert ids(channel="push") == {manual.json["id"]} and len(ids(channel="email")) == 9
    assert len(ids(experiment="onboarding-nudge")) == 9
    assert manual.json["id"] in ids(verdict="win") and len(ids(verdict="inconclusive")) >= 3
    assert ids(tag="research") == {manual.json["id"]} and len(ids(tag="q1-2026")) == 9
    assert ids(tag=["research", "interviews"]) == {manual.json["id"]}
    assert ids(tag=["research", "q1-2026"]) == set()
    assert ids(source="manual") == {manual.json["id"]}
    now = datetime.now(UTC)
    assert ids(since=(now - timedelta(hours=1)).isoformat()) == everything
    assert ids(until=(now - timedelta(hours=1)).isoformat()) == set()
    # Text search over summary, hypothesis and notes, stemmed.
    assert ids(q="commute") == {manual.json["id"]}
    assert ids(q="interview subscribers") == {manual.json["id"]}  # "Interviews", notes
    assert len(ids(q="activates newcomers")) >= 1  # the experiment's hypothesis
    assert ids(q="nothing-like-this") == set()
    ordered = [x["lift"] and x["lift"]["mean"] for x in query(client, keys, sort="-lift")]
    known = [lift for lift in ordered if lift is not None]
    assert known == sorted(known, reverse=True) and len(known) >= 4
    assert ordered[: len(known)] == known  # learnings without a lift come last
    page = client.get("/v1/learnings?page=2&page_size=4", headers=keys["read"])
    assert len(page.json) == 4 and '"total": 10' in page.headers["X-Pagination"]
    for params in ({"verdict": "maybe"}, {"sort": "units"}):
        response = client.get("/v1/learnings", query_string=params, headers=keys["read"])
        assert response.status_code == 422 and set(params) <= set(response.json["errors"])
    response = client.post("/v1/learnings", json={"notes": "no summary"}, headers=keys["manage"])
    assert response.status_code == 422 and "summary" in response.json["errors"]


def test_evidence_pools_a_factor_level_across_experiments(client, keys, database):
    renewal(client, keys, "renewal-a", push_every=3)
    renewal(client, keys, "renewal-b", push_every=5)
    for key in ("renewal-a", "renewal-b"):
        publish(client, keys, key)
    levels = {"segment": "all", "metric": "renewed", "factor": "channel", "level": "push"}
    response = client.get("/v1/learnings/evidence", query_string=levels, headers=keys["read"])
    assert response.status_code == 200, response.json
    answer = response.json
    assert [e["experiment"] for e in answer["experiments"]] == ["renewal-a", "renewal-b"]
    # Pooled on each learning's posterior mean and sd of log(p_push / p_email), as stored.
    stored = {x["experiment"]: x["log_lift"] for x in query(client, keys, **levels)}
    studies = [Study(key, stored[key]["mean"], stored[key]["sd"]) for key in stored]
    assert [e["log_lift"] for e in answer["experiments"]] == [stored[k] for k in sorted(stored)]
    expected = random_effects(studies)
    assert answer["pooled"]["log_lift"] == pytest.approx(
        {"mean": expected.log_lift, "sd": expected.se}
    )
    assert answer["pooled"]["lift"]["mean"] == pytest.approx(expected.lift)
    assert answer["pooled"]["lift"]["ci"] == pytest.approx([expected.low, expected.high])
    assert answer["spread"]["tau"] == pytest.approx(expected.tau)
    assert answer["pooled"]["experiments"] == 2 and answer["pooled"]["prob_better"] > 0.9
    lone = client.get(
        "/v1/learnings/evidence",
        query_string={"metric": "renewed", "factor": "channel", "level": "sms"},
        headers=keys["read"],
    ).json
    assert lone["pooled"] is None and lone["experiments"] == [] and lone["note"]
    missing = client.get("/v1/learnings/evidence", headers=keys["read"])
    assert missing.status_code == 422
    # The documented schema drops and changes nothing: byte for byte, the domain's answer.
    for asked in (levels, {**levels, "level": "sms"}):
        answer = client.get("/v1/learnings/evidence", query_string=asked, headers=keys["read"])
        with database.session() as session:
            domain = json_response(evidence(session=session, **asked)).get_data()
        assert answer.get_data() == domain


@pytest.mark.parametrize(
    "lift",
    [{"mean": 0.1, "ci": [0.2, 0.0]}, {"mean": 0.5, "ci": [0.0, 0.2]}, {"mean": -1.5}],
)
def test_a_hand_written_lift_out_of_order_is_refused_and_stores_nothing(client, keys, lift):
    response = client.post(
        "/v1/learnings", json={"summary": "Backwards.", "lift": lift}, headers=keys["manage"]
    )
    assert response.status_code == 422
    assert any(field.startswith("lift") for field in response.json["errors"])
    assert query(client, keys) == []


def test_a_learning_whose_control_never_converted_leaves_evidence_and_priors_answering(
    client, keys
):
    """Its lift has no mean (the ratio over a zero rate has none): evidence and learned priors
    leave it out instead of failing for everyone."""
    start(client, keys, experiment_body(holdout=0.0))
    # Only evening-email (not the control) ever converts.
    fill(
        client,
        keys,
        "onboarding-nudge",
        400,
        lambda a, i: a["variant"] == "evening-email",
        "activated",
    )
    published = publish(client, keys, "onboarding-nudge")
    meanless = [x for x in published if x["lift"] and x["lift"]["mean"] is None]
    assert meanless
    for learning in meanless:
        query = {name: learning[name] for name in ("segment", "metric", "factor", "level")}
        evidence = client.get("/v1/learnings/evidence", query_string=query, headers=keys["read"])
        assert evidence.status_code == 200, evidence.json
        assert evidence.json["pooled"] is None
    learned = experiment_body(key="next", prior="learnings")
    response = client.post("/v1/experiments", json=learned, headers=keys["manage"])
    assert response.status_code == 201, response.json


def test_concurrent_publications_all_answer_what_they_stored(client, keys, nodes):
    onboarding(client, keys)
    apps = nodes(2)
    answers: list = []

    def publish_on(node: int) -> None:
        with apps[node].test_client() as other:
            for _ in range(6):
                response = other.post(
                    "/v1/experiments/onboarding-nudge/learnings", json={}, headers=keys["manage"]
                )
                answers.append((response.status_code, response.json))

    threads = [threading.Thread(target=publish_on, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {status for status, _ in answers} <= {201, 409}, answers
    assert sum(status == 201 for status, _ in answers) >= 6
    assert len(query(client, keys, experiment="onboarding-nudge")) == 9


@pytest.mark.parametrize("tag", ['say "hi"', "back\\slash", "café", "早上好", "50%_off"])
def test_a_tag_is_found_whatever_characters_it_holds(client, keys, tag):
    body = {"summary": "Tagged.", "tags": [tag, "other"]}
    assert client.post("/v1/learnings", json=body, headers=keys["manage"]).status_code == 201
    decoy = {"summary": "Decoy.", "tags": ["50%Xoff", "cafe", "say hi"]}
    assert client.post("/v1/learnings", json=decoy, headers=keys["manage"]).status_code == 201
    found = query(client, keys, tag=tag)
    assert [x["summary"] for x in found] == ["Tagged."]


def test_a_learning_quotes_the_median_lift_the_results_give(client, keys):
    """At small counts the lift's mean is pulled up by the ratio's tail (2/200 against 3/200
    reads +99%, its median +37%): the sentence quotes the median, equal to the results'."""
    start(client, keys, experiment_body(holdout=0.0, segments=[]))
    # Every 40th unit of the email arm converts, every 60th of the control: counted within
    # each arm, so that the counts do not hang on the hash seed's split (counted over all
    # units, the control drew no conversion in ~1% of seeds and its lift had no mean).
    seen = Counter()

    def converts(answer, _):
        seen[answer["variant"]] += 1
        return seen[answer["variant"]] % (40 if answer["variant"] == "evening-email" else 60) == 1

    fill(client, keys, "onboarding-nudge", 400, converts, "activated")
    results = client.get(
        "/v1/experiments/onboarding-nudge/results",
        query_string={"metric": "activated"},
        headers=keys["read"],
    ).json
    (row,) = [r for r in results["segments"][0]["variants"] if r["variant"] == "evening-email"]
    (email,) = [
        x
        for x in publish(client, keys, "onboarding-nudge")
        if x["segment"] == "all" and x["metric"] == "activated"
    ]
    assert email["lift"]["median"] == pytest.approx(row["lift"]["median"])
    assert email["lift"]["mean"] > email["lift"]["median"] + 0.05
    assert f"by {email['lift']['median']:+.0%} (median; 95%: " in email["summary"]
