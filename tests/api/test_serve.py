"""End to end on a fresh machine's path: `kairos serve` under gunicorn, over real HTTP.

It follows the README's walk-through: the one-time admin token, a key, an experiment created
and started, read back with another key.
"""

import os
import re
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.pg import free_port
from tests.utils.factories import experiment_body

KAIROS = Path(sys.executable).with_name("kairos")


@contextmanager
def serving(tmp_path, **extra_env):
    """A `kairos serve` process on a fresh SQLite file, its output in a log file (a pipe left
    unread would fill up and stall the server); yields (base URL, admin token, env, output so
    far)."""
    port = free_port()
    env = {
        **os.environ,
        "KAIROS_DATABASE_URL": f"sqlite:///{tmp_path}/kairos.sqlite3",
        "KAIROS_SECRET_KEY": "e2e",
        **extra_env,
    }
    log = (tmp_path / "server.log").open("w+")
    process = subprocess.Popen(
        [str(KAIROS), "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        output = ""
        while "Kairos serving on" not in output and time.monotonic() < deadline:
            assert process.poll() is None, output
            time.sleep(0.1)
            log.seek(0)
            output = log.read()
        found = re.search(r"^\s+(kairos_\S+)\s*$", output, re.M)
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or busy
                time.sleep(0.1)
        yield base, found and found.group(1), env, output
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def served(tmp_path):
    with serving(tmp_path) as running:
        yield running


def test_serve_prints_a_one_time_admin_token_and_serves_the_walkthrough(served):
    base, admin_token, env, output = served
    assert admin_token, output
    admin = {"Authorization": f"Bearer {admin_token}"}

    # The README: create a growth-team key with the CLI, as an operator would.
    created = subprocess.run(
        [str(KAIROS), "keys", "create", "growth", "--scopes", "manage"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    growth = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}

    response = requests.post(f"{base}/v1/experiments", json=experiment_body(), headers=growth)
    assert response.status_code == 201, response.text
    response = requests.post(f"{base}/v1/experiments/onboarding-nudge/start", headers=growth)
    assert response.status_code == 200
    assert response.json()["status"] == "running"
    listed = requests.get(f"{base}/v1/experiments?status=running", headers=admin).json()
    assert [e["key"] for e in listed] == ["onboarding-nudge"]
    assert requests.get(f"{base}/v1/experiments").status_code == 401
    assert requests.get(f"{base}/docs").status_code == 200

    # A journey engine asks, over several connections (so over both workers): one answer.
    engine = subprocess.run(
        [str(KAIROS), "keys", "create", "engine", "--scopes", "assign"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    engine_key = {"Authorization": f"Bearer {engine.stdout.strip().splitlines()[-1]}"}
    body = {"experiment": "onboarding-nudge", "unit_id": "user-42", "timezone": "Europe/Paris"}
    answers = [
        requests.post(f"{base}/v1/assignments", json=body, headers=engine_key).json()
        for _ in range(6)
    ]
    assert len({a["assignment_id"] for a in answers}) == 1, answers
    assert answers[0]["variant"] in {"morning-push", "evening-email", None}  # None: holdout
    event = {**{k: body[k] for k in ("experiment", "unit_id")}, "event_id": "e-42"}
    event["metric"] = "activated"
    counts = [
        requests.post(f"{base}/v1/outcomes", json=event, headers=engine_key).json()
        for _ in range(3)
    ]
    assert counts[0] == {"accepted": 1, "duplicates": 0, "unattributed": 0}
    assert counts[1:] == [{"accepted": 0, "duplicates": 1, "unattributed": 0}] * 2
    refused = requests.post(f"{base}/v1/assignments", json=body, headers=growth)
    assert refused.status_code == 403
    assert refused.json()["code"] == 403


def test_a_second_server_on_a_busy_port_refuses_to_start(served):
    base, _, env, _ = served
    port = base.rsplit(":", 1)[1]
    result = subprocess.run(
        [str(KAIROS), "serve", "--port", port],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"127.0.0.1:{port} is already in use" in result.stderr


def test_a_second_serve_does_not_print_another_token(served, tmp_path):
    _, _, env, _ = served
    port = free_port()
    process = subprocess.Popen(
        [str(KAIROS), "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for _ in range(200):
            line = process.stdout.readline()
            lines.append(line)
            if "Kairos serving on" in line or not line:
                break
        assert not any("kairos_" in line for line in lines), "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()


def test_simulate_drives_the_served_api_end_to_end(served):
    base, admin_token, env, _ = served
    result = subprocess.run(
        [str(KAIROS), "simulate", "--url", base, "--hours", "8", "--users-per-hour", "150"],
        env={**env, "KAIROS_TOKEN": admin_token},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Created experiment 'simulated-onboarding'" in result.stdout
    assert "hour   8/8" in result.stdout
    assert "Regret" in result.stdout and "Final weights per segment" in result.stdout
    assert "What Kairos's results say (activated, beta-binomial)" in result.stdout
    assert "suppressed   most often" in result.stdout and "recommendation: " in result.stdout
    assert "What the learnings registry learned" in result.stdout
    admin = {"Authorization": f"Bearer {admin_token}"}
    experiment = requests.get(f"{base}/v1/experiments/simulated-onboarding", headers=admin).json()
    learned = requests.get(
        f"{base}/v1/learnings",
        params={"experiment": "simulated-onboarding", "tag": "simulated"},
        headers=admin,
    ).json()
    assert learned and {x["factor"] for x in learned} == {"timing", "tone", "channel"}
    assert experiment["status"] == "running"
    database = env["KAIROS_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        periods = connection.execute("SELECT count(*) FROM allocation_period").fetchone()[0]
        outcomes = connection.execute("SELECT count(*) FROM outcome").fetchone()[0]
    assert periods > 1  # the bandit reweighted as the simulated hours passed
    assert outcomes > 0
    check = subprocess.run(
        [str(KAIROS), "stats", "check", "simulated-onboarding"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    again = subprocess.run(
        [str(KAIROS), "simulate", "--url", base, "--hours", "1", "--users-per-hour", "10"],
        env={**env, "KAIROS_TOKEN": admin_token},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Reusing experiment 'simulated-onboarding' (running)" in again.stdout

    refused = subprocess.run(
        [str(KAIROS), "simulate", "--url", base, "--token", "kairos_wrong", "--hours", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "401" in refused.stderr


@pytest.mark.slow
def test_the_served_instance_runs_analyses_in_a_thread(tmp_path):
    """On the embedded default, `kairos serve` runs PyMC jobs itself (no `kairos worker`),
    even while another server (on another database, from the same instance folder: `make
    run` beside the tests) runs its own."""
    draws = {"KAIROS_ANALYSIS_DRAWS": "200", "KAIROS_ANALYSIS_TUNE": "200"}
    fast = {"KAIROS_ANALYSIS_CHAINS": "2", "KAIROS_ANALYSIS_POLL": "0.5"}
    (tmp_path / "other").mkdir()
    with (
        serving(tmp_path / "other"),
        serving(tmp_path, **draws, **fast) as (base, token, _, _),
    ):
        admin = {"Authorization": f"Bearer {token}"}
        body = experiment_body(holdout=0.0)
        assert requests.post(f"{base}/v1/experiments", json=body, headers=admin).ok
        assert requests.post(f"{base}/v1/experiments/{body['key']}/start", headers=admin).ok
        units = [{"unit_id": f"u{i}"} for i in range(600)]
        answers = requests.post(
            f"{base}/v1/assignments/batch",
            json={"experiment": body["key"], "units": units},
            headers=admin,
        ).json()["assignments"]
        events = [
            {"event_id": f"e{i}", "assignment_id": a["assignment_id"], "metric": "activated"}
            for i, a in enumerate(answers)
            if i % 5 == 0
        ]
        reported = requests.post(
            f"{base}/v1/outcomes/batch", json={"events": events}, headers=admin
        )
        assert reported.ok
        job = requests.post(
            f"{base}/v1/experiments/{body['key']}/analyses",
            json={"method": "hierarchical"},
            headers=admin,
        ).json()
        seen = set()
        deadline = time.monotonic() + 240
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = requests.get(f"{base}/v1/analyses/{job['id']}", headers=admin).json()
            seen.add(job["stage"])
        log = (tmp_path / "server.log").read_text()
        assert job["status"] == "succeeded", (job, log[-3000:])
        assert "sampling" in seen  # progress was reported on the way
        assert job["result"]["sampler"]["draws"] == 200
