"""Analysis jobs over HTTP and the worker: validation, exclusive claiming across workers, stale
jobs taken up again, failures reported, and (slow) a real PyMC run end to end; on SQLite and
PostgreSQL."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select

from experiments.analysis_jobs import JobSettings, Worker, claim
from experiments.learnings.publish import MAX_RHAT, MIN_ESS
from experiments.storage.tables import AnalysisJob
from tests.utils.assignments import assign_batch, start
from tests.utils.factories import FACTORIAL, experiment_body

KEY = "onboarding-nudge"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
QUICK = JobSettings(draws=200, tune=200, chains=2)


def queue(client, keys, key=KEY, **body):
    body.setdefault("method", "hierarchical")
    return client.post(f"/v1/experiments/{key}/analyses", json=body, headers=keys["manage"])


def follow(client, keys, job_id):
    response = client.get(f"/v1/analyses/{job_id}", headers=keys["read"])
    assert response.status_code == 200, response.json
    return response.json


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "bayesian"}, "method"),
        ({"method": "hierarchical", "metric": "clicks"}, "metric"),
        ({"method": "hierarchical", "metric": "revenue"}, "metric"),
        ({"method": "factorial"}, "method"),  # its variants set different factors
        ({}, "method"),
    ],
)
def test_invalid_requests_are_refused_and_queue_nothing(client, keys, database, body, field):
    revenue = {"key": "revenue", "type": "continuous", "role": "secondary"}
    start(client, keys, experiment_body(metrics=[*experiment_body()["metrics"], revenue]))
    response = client.post(f"/v1/experiments/{KEY}/analyses", json=body, headers=keys["manage"])
    assert response.status_code in (400, 422)
    assert field in response.json["errors"]
    with database.session() as session:
        assert session.exec(select(func.count()).select_from(AnalysisJob)).one() == 0
    assert queue(client, keys, key="nope").status_code == 404
    assert client.get("/v1/analyses/999", headers=keys["read"]).status_code == 404


def test_a_job_is_queued_then_followed(client, keys):
    start(client, keys, experiment_body())
    response = queue(client, keys)
    assert response.status_code == 202
    job = response.json
    assert job["status"] == "queued" and job["progress"] == 0.0
    assert job["experiment"] == KEY and job["metric"] == "activated"
    assert follow(client, keys, job["id"])["status"] == "queued"


def test_each_job_is_claimed_by_exactly_one_of_several_workers(client, keys, nodes, database):
    start(client, keys, experiment_body())
    ids = {queue(client, keys).json["id"] for _ in range(12)}
    claimed, lock = [], threading.Lock()
    barrier = threading.Barrier(4)

    def work(node_database, name):
        barrier.wait()
        while (job_id := claim(node_database, name)) is not None:
            with lock:
                claimed.append(job_id)

    from tests.conftest import get_database_of

    databases = [database, database] + [get_database_of(n) for n in nodes(2)]
    threads = [threading.Thread(target=work, args=(db, f"w{i}")) for i, db in enumerate(databases)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)  # every job once, none twice


def test_a_job_whose_worker_died_is_claimed_again(client, keys, database):
    start(client, keys, experiment_body())
    job_id = queue(client, keys).json["id"]
    assert claim(database, "w1", now=T0) == job_id
    assert claim(database, "w2", now=T0 + timedelta(minutes=1)) is None  # alive
    assert claim(database, "w2", now=T0 + timedelta(minutes=6)) == job_id  # heartbeat stopped
    with database.session() as session:
        assert session.get(AnalysisJob, job_id).worker == "w2"


def test_a_failing_job_is_reported_with_its_error(client, keys, database):
    start(client, keys, experiment_body())  # no units at all
    job_id = queue(client, keys).json["id"]
    assert Worker(database, settings=QUICK).run_once() == "failed"
    job = follow(client, keys, job_id)
    assert job["status"] == "failed" and job["stage"] == "failed"
    assert "no units yet" in job["error"] and job["result"] is None
    assert job["finished_at"] is not None
    assert Worker(database, settings=QUICK).run_once() is None  # nothing left


def test_the_worker_command_runs_waiting_jobs(client, keys, runner):
    from api.cli import main

    start(client, keys, experiment_body())
    queue(client, keys)
    result = runner.invoke(main, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "analysis finished: failed" in result.output and "1 analysis job(s) run" in result.output


@pytest.mark.slow
def test_a_hierarchical_job_runs_end_to_end(client, keys, database):
    start(client, keys, experiment_body(holdout=0.0))
    units = [
        {"unit_id": f"u{i}", "attributes": {"days_since_signup": 3 if i % 2 else 40}}
        for i in range(1_200)
    ]
    answers = assign_batch(client, keys["admin"], KEY, units, now=T0.isoformat())
    events = [
        {
            "event_id": f"e{i}",
            "assignment_id": a["assignment_id"],
            "metric": "activated",
            "occurred_at": (T0 + timedelta(hours=1)).isoformat(),
        }
        for i, a in enumerate(answers)
        if i % (6 if a["variant"] == "morning-push" else 4) == 0
    ]
    assert (
        client.post(
            "/v1/outcomes/batch", json={"events": events}, headers=keys["assign"]
        ).status_code
        == 202
    )
    job_id = queue(client, keys).json["id"]
    assert Worker(database, settings=QUICK).run_once() == "succeeded"
    job = follow(client, keys, job_id)
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["error"] is None
    result = job["result"]
    assert [s["segment"] for s in result["segments"]] == ["all", "newcomers", "other"]
    email = result["segments"][0]["variants"][1]
    assert email["variant"] == "evening-email" and email["prob_beat_control"] > 0.9
    assert set(result["diagnostics"]) >= {"max_rhat", "min_ess", "divergences"}
    assert result["sampler"]["draws"] == 200 and result["sampler"]["seed"] == job_id


@pytest.mark.slow
def test_a_factorial_job_reports_main_effects(client, keys, database):
    body = experiment_body(FACTORIAL, allocation="fixed", bandit=None)
    start(client, keys, body)
    answers = assign_batch(
        client, keys["admin"], "renewal-reminder", [{"unit_id": f"u{i}"} for i in range(1_600)]
    )
    events = [
        {"event_id": f"e{i}", "assignment_id": a["assignment_id"], "metric": "renewed"}
        for i, a in enumerate(answers)
        if i % (3 if "channel=push" in a["variant"] else 8) == 0
    ]
    assert (
        client.post(
            "/v1/outcomes/batch", json={"events": events}, headers=keys["assign"]
        ).status_code
        == 202
    )
    job_id = queue(client, keys, key="renewal-reminder", method="factorial").json["id"]
    assert Worker(database, settings=QUICK).run_once() == "succeeded"
    overall = follow(client, keys, job_id)["result"]["segments"][0]
    channel = next(e for e in overall["main_effects"] if e["factor"] == "channel")
    assert (channel["level"], channel["baseline_level"]) == ("push", "email")
    assert channel["prob_better"] > 0.99 and channel["lift"]["mean"] > 0.5

    # Learnings are published from the finished factorial job (its metric) if its sampler
    # converged by the registry's standard; this quick one (200 draws × 2 chains) is judged
    # on its own diagnostics either way.
    job = follow(client, keys, job_id)["result"]
    diagnostics = job["diagnostics"]
    sound = (
        diagnostics["converged"]
        and diagnostics["max_rhat"] <= MAX_RHAT
        and diagnostics["divergences"] == 0
        and diagnostics["min_ess"] >= MIN_ESS
    )
    published = client.post(
        "/v1/experiments/renewal-reminder/learnings", json={}, headers=keys["manage"]
    ).json
    renewed = [x for x in published if x["metric"] == "renewed"]
    push = next(x for x in renewed if x["segment"] == "all" and x["level"] == "push")
    if sound:
        assert {x["method"] for x in renewed} == {"factorial"}
        assert push["lift"]["mean"] == pytest.approx(channel["lift"]["mean"])
    else:
        assert {x["method"] for x in renewed} == {"beta-binomial"}
        assert all(f"factorial PyMC job {job_id} did not converge" in x["notes"] for x in renewed)
    assert push["verdict"] == "win" and push["summary"].startswith("Across all users, push beat")
    assert {x["method"] for x in published if x["metric"] == "suppressed"} == {"beta-binomial"}
