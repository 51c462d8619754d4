"""End to end on a fresh machine's path: `kairos serve` under gunicorn, over real HTTP.

It follows the README's walk-through: the one-time admin token, a key, an experiment created
and started, read back with another key.
"""

import re
import sqlite3
import subprocess
import time
from contextlib import contextmanager

import pytest
import requests

from tests.pg import free_port
from tests.servers import KAIROS, kairos_serve
from tests.utils.factories import experiment_body


@contextmanager
def serving(tmp_path, **extra_env):
    """A `kairos serve` process on a fresh SQLite file, its output in a log file; yields (base
    URL, admin token, env, output so far)."""
    database_url = f"sqlite:///{tmp_path}/kairos.sqlite3"
    with kairos_serve(database_url, tmp_path / "server.log", **extra_env) as served:
        yield served.base, served.admin_token(), served.env, served.output()


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


def raw_request(base: str, head: bytes, body_chunks=()) -> tuple[int, dict, bytes]:
    """Send bytes as they are (requests would fix what the test means to break); the status,
    headers and body of the answer."""
    import socket

    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(head)
        try:
            for chunk in body_chunks:
                connection.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent
        received = b""
        while True:
            try:
                data = connection.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
            if b"\r\n\r\n" in received:
                head_part, _, rest = received.partition(b"\r\n\r\n")
                length = re.search(rb"content-length:\s*(\d+)", head_part, re.I)
                if length and len(rest) >= int(length.group(1)):
                    break
    head_part, _, rest = received.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, rest


def assert_error_shape(status: int, headers: dict, body: bytes, expected: int) -> None:
    import json

    assert status == expected, body[:300]
    assert headers["content-type"].startswith("application/json"), headers
    answer = json.loads(body)
    assert set(answer) == {"code", "status", "message", "errors"}
    assert answer["code"] == expected


def test_refusals_before_the_app_are_in_the_error_shape_too(served):
    """gunicorn refuses an over-long request line (414) or header (431) itself; a body over
    32 MB is a 413 whether its length is announced or it comes in chunks."""
    base, token, _, _ = served
    auth = f"Authorization: Bearer {token}\r\n".encode()
    long_query = b"GET /v1/learnings?q=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert_error_shape(*raw_request(base, long_query), 414)
    big_header = b"GET /v1/experiments HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n"
    assert_error_shape(*raw_request(base, big_header), 431)

    size = 33 * 1024 * 1024
    announced = (
        b"POST /v1/outcomes/batch HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Content-Type: application/json\r\nContent-Length: "
        + str(size).encode()
        + b"\r\n\r\n"
    )
    assert_error_shape(*raw_request(base, announced, [b" " * (1024 * 1024)] * 33), 413)
    chunk = b" " * (1024 * 1024)
    chunked = (
        b"POST /v1/outcomes/batch HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunks = [b"%x\r\n" % len(chunk) + chunk + b"\r\n"] * 33 + [b"0\r\n\r\n"]
    assert_error_shape(*raw_request(base, chunked, chunks), 413)
    # The server still answers everyone afterwards.
    assert requests.get(f"{base}/health", timeout=5).status_code == 200


def test_a_body_that_cannot_be_read_whole_is_a_400_and_stores_nothing(served):
    """Broken chunked encoding, or a body shorter than its Content-Length (the client closed
    early), is refused: the request is never judged on part of its body."""
    import json
    import socket

    base, token, _, _ = served
    auth = f"Authorization: Bearer {token}\r\n".encode()
    body = json.dumps({"summary": "Must not be stored."}).encode()
    head = (
        b"POST /v1/learnings HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Type: application/json\r\n"
    )
    for chunks in (
        [b"zz\r\n" + body + b"\r\n0\r\n\r\n"],  # a chunk size that is not hexadecimal
        [b"%x\r\n" % len(body) + body + b"XX0\r\n\r\n"],  # no CRLF after the chunk
    ):
        answer = raw_request(base, head + b"Transfer-Encoding: chunked\r\n\r\n", chunks)
        assert_error_shape(*answer, 400)

    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head + b"Content-Length: %d\r\n\r\n" % (len(body) + 100) + body)
        connection.shutdown(socket.SHUT_WR)  # the client stops sending, 100 bytes short
        received = b""
        while data := connection.recv(65536):
            received += data
    status = int(received.split(b" ", 2)[1]) if received else None
    assert status in (400, None), received[:300]  # a 400, or the server just closes

    admin = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{base}/v1/learnings", headers=admin, timeout=10).json() == []
