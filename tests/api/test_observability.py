"""Observable in production: /metrics summed over gunicorn's workers, JSON log lines with a
request id echoed in X-Request-Id, no secret in any log line, and /health/live; against a
real `kairos serve` with 2 workers and JSON logs, shared by the tests of this module."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from api import create_app
from tests.api.test_serve import KAIROS, raw_request, serving
from tests.utils.factories import experiment_body

ROOT = Path(__file__).resolve().parents[2]

EXPERIMENT_ROUTE = "/v1/experiments/<key:key>"
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("observed")
    with serving(folder, KAIROS_LOG_FORMAT="json", TMPDIR=str(folder)) as (base, token, env, _):
        admin = {"Authorization": f"Bearer {token}"}
        bandit = {"update_every_seconds": 3600, "min_units_per_arm": 1}
        for body in (
            experiment_body(key="first-one"),
            experiment_body(key="second-one", allocation="thompson", bandit=bandit),
        ):
            assert requests.post(f"{base}/v1/experiments", json=body, headers=admin).ok
            key = body["key"]
            assert requests.post(f"{base}/v1/experiments/{key}/start", headers=admin).ok
        yield base, admin, env, folder
    # `kairos serve` made its metrics folder in TMPDIR, and removed it when it stopped.
    assert not list(folder.glob("kairos-metrics-*"))


def log_lines(folder) -> list[dict]:
    """The server's JSON log lines (every line it wrote after the CLI's own banner)."""
    lines = []
    for line in (folder / "server.log").read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def scrape(base) -> dict[tuple, float]:
    """/metrics as {(name, frozenset of label pairs): value}."""
    response = requests.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = SAMPLE.match(line)
        assert found, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', found["labels"] or ""))
        samples[(found["name"], labels)] = float(found["value"])
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples, name, **labels) -> list:
    wanted = set(labels.items())
    return [key for key in samples if key[0] == name and wanted <= key[1]]


def test_request_counts_are_summed_over_the_workers_by_route_not_path(server):
    base, admin, _, folder = server
    before = scrape(base)
    n = 30
    ids = []
    for i in range(n):  # a new connection each: the kernel spreads them over both workers
        key = ("first-one", "second-one")[i % 2]
        response = requests.get(
            f"{base}/v1/experiments/{key}", headers={**admin, "Connection": "close"}
        )
        assert response.status_code == 200
        ids.append(response.headers["X-Request-Id"])
    lines = {line.get("request_id"): line for line in log_lines(folder)}
    assert len({lines[i]["pid"] for i in ids}) == 2, "both workers answered"
    # Whichever worker answers the scrape, it reports the sum over both, three times over.
    for _ in range(3):
        after = scrape(base)
        labels = {"route": EXPERIMENT_ROUTE, "method": "GET"}
        counted = value(after, "kairos_http_requests_total", **labels, status="200")
        assert counted - value(before, "kairos_http_requests_total", **labels, status="200") == n
        # Two experiment keys, one series: the route is the rule, never the path.
        assert len(series(after, "kairos_http_requests_total", **labels)) == 1
        assert not [k for k in after if any("first-one" in v for _, v in k[1])]
        bucket = "kairos_http_request_duration_seconds_bucket"
        assert value(after, bucket, **labels, le="+Inf") - value(
            before, bucket, **labels, le="+Inf"
        ) == pytest.approx(n)
        assert len(series(after, bucket, **labels)) > 5  # the buckets of a histogram
        assert value(after, "kairos_http_request_duration_seconds_sum", **labels) > 0


def test_outcome_and_assignment_counts_are_what_the_api_answered(server):
    base, admin, _, _ = server
    before = scrape(base)
    units = [{"unit_id": f"metrics-{i}"} for i in range(20)]
    answers = requests.post(
        f"{base}/v1/assignments/batch",
        json={"experiment": "first-one", "units": units},
        headers=admin,
    ).json()["assignments"]
    one = requests.post(
        f"{base}/v1/assignments", json={"experiment": "first-one", "unit_id": "metrics-0"}
    )
    assert one.status_code == 401  # refused: counted as a request, not as an assignment
    again = requests.post(
        f"{base}/v1/assignments",
        json={"experiment": "first-one", "unit_id": "metrics-0"},
        headers=admin,
    )
    assert again.ok
    events = [
        {"event_id": f"m-{i}", "assignment_id": a["assignment_id"], "metric": "activated"}
        for i, a in enumerate(answers[:8])
    ] + [{"event_id": "m-stray", "assignment_id": "0" * 32, "metric": "activated"}]
    totals = {"accepted": 0, "duplicates": 0, "unattributed": 0}
    for batch in (events, events[:4]):  # the second time, all duplicates
        counts = requests.post(
            f"{base}/v1/outcomes/batch", json={"events": batch}, headers=admin
        ).json()
        for name in totals:
            totals[name] += counts[name]
    assert totals == {"accepted": 9, "duplicates": 4, "unattributed": 1}

    after = scrape(base)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("kairos_outcome_events_total", result="accepted") == totals["accepted"]
    assert delta("kairos_outcome_events_total", result="duplicate") == totals["duplicates"]
    assert delta("kairos_outcome_events_total", result="unattributed") == totals["unattributed"]
    held_out = sum(1 for a in answers if a["holdout"])
    assert delta("kairos_assignments_total", outcome="assigned") == len(units) - held_out
    assert delta("kairos_assignments_total", outcome="holdout") == held_out
    assert delta("kairos_assignments_total", outcome="repeated") == 1
    assert ("kairos_db_write_lock_wait_seconds_count", frozenset()) in after
    assert value(after, "kairos_analysis_jobs", status="queued") == 0


def test_reweights_are_counted(server):
    base, admin, _, _ = server
    units = [{"unit_id": f"reweighted-{i}"} for i in range(20)]
    batch = {"experiment": "second-one", "units": units}
    assert requests.post(f"{base}/v1/assignments/batch", json=batch, headers=admin).ok
    before = scrape(base)
    response = requests.post(f"{base}/v1/experiments/second-one/reweight", json={}, headers=admin)
    assert response.ok, response.text
    after = scrape(base)
    counted = value(after, "kairos_reweights_total", trigger="manual")
    assert counted - value(before, "kairos_reweights_total", trigger="manual") == 1


def test_the_request_id_is_the_clients_when_safe_else_a_new_one(server):
    base, admin, _, folder = server
    given = requests.get(f"{base}/health/live", headers={"X-Request-Id": "engine-7f3a.42"})
    assert given.headers["X-Request-Id"] == "engine-7f3a.42"
    assert given.json() == {"status": "ok"}
    made = requests.get(f"{base}/health/live").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    for unsafe in ("a" * 500, "evil\x01id", "two words", "{json}"):
        answered = requests.get(f"{base}/health/live", headers={"X-Request-Id": unsafe})
        assert re.fullmatch(r"[0-9a-f]{32}", answered.headers["X-Request-Id"]), unsafe
    # A header no HTTP client would send (a raw line feed is a new header to the server).
    status, headers, _ = raw_request(
        base, b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-Id: \x7f\x1b[31m\r\n\r\n"
    )
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    # Errors carry it too: the app's JSON refusals and gunicorn's own.
    refused = requests.get(f"{base}/v1/experiments/nope", headers={**admin, "X-Request-Id": "r-1"})
    assert refused.status_code == 404
    assert refused.headers["X-Request-Id"] == "r-1"
    assert requests.get(f"{base}/v1/experiments").headers["X-Request-Id"]
    long_line = b"GET /v1/learnings?q=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, headers, _ = raw_request(base, long_line)
    assert status == 414 and re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])

    time.sleep(0.2)
    lines = log_lines(folder)
    (line,) = [x for x in lines if x.get("request_id") == "engine-7f3a.42"]
    assert line["route"] == "/health/live" and line["method"] == "GET"
    assert line["status"] == 200 and line["duration_ms"] >= 0 and line["pid"] > 0
    assert line["logger"] == "api.requests" and line["level"] == "INFO" and line["time"]
    (line,) = [x for x in lines if x.get("request_id") == "r-1"]
    assert line["status"] == 404 and line["route"] == EXPERIMENT_ROUTE
    assert any("gunicorn" in x["logger"] for x in lines)  # gunicorn's own lines are JSON too


def test_no_token_attribute_or_body_in_any_log_line(server):
    base, _, env, folder = server
    created = subprocess.run(
        [str(KAIROS), "keys", "create", "engine", "--scopes", "assign"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = created.stdout.strip().splitlines()[-1]
    engine = {"Authorization": f"Bearer {token}", "Cookie": "kairos_ui=cookie-secret-77"}
    attributes = {"email": "attribute-secret-55@example.com", "plan": "attribute-secret-66"}
    body = {"experiment": "first-one", "unit_id": "secret-unit-99", "attributes": attributes}
    assert requests.post(f"{base}/v1/assignments", json=body, headers=engine).ok  # fast lane
    body["now"] = "2020-01-01T00:00:00Z"  # an assign key's `now` is ignored: through Flask
    assert requests.post(f"{base}/v1/assignments", json=body, headers=engine).ok
    bad = {**body, "unit_id": "", "attributes": {**attributes, "x": ["body-secret-44"]}}
    assert requests.post(f"{base}/v1/assignments", json=bad, headers=engine).status_code == 422
    query = {"token": token, "q": "query-secret-33"}
    requests.get(f"{base}/v1/learnings", params=query, headers=engine)
    requests.get(f"{base}/ui/experiments", params=query, headers=engine)
    requests.get(f"{base}/v1/experiments", headers={"Authorization": f"Bearer {token}x"})
    # A request line gunicorn refuses itself, which it quotes in its own warning.
    for line in (f"GET /v1/learnings?token={token}\x01 HTTP/1.1", f"GET /?token={token} x y"):
        raw_request(base, (line + "\r\nHost: x\r\n\r\n").encode())
    time.sleep(0.2)
    output = (folder / "server.log").read_text()
    assert token[:20] not in output
    for secret in (
        "cookie-secret-77",
        "attribute-secret-55",
        "attribute-secret-66",
        "body-secret-44",
        "query-secret-33",
        "secret-unit-99",
    ):
        assert secret not in output, secret
    assert "/v1/assignments" in output  # the requests were logged, without them


def test_liveness_and_readiness_when_served(server):
    base, _, _, _ = server
    assert requests.get(f"{base}/health/live").json() == {"status": "ok"}
    ready = requests.get(f"{base}/health").json()
    assert ready["status"] == "ok" and ready["schema"] == "up to date"


def test_a_process_without_its_database_is_alive_but_not_ready(tmp_path):
    """/health/live touches no database: an orchestrator keeps the process (it would not
    answer better restarted) and routes nothing to it while /health says 503."""
    app = create_app(
        {
            "TESTING": True,
            "KAIROS_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/folder/kairos.sqlite3",
            "SECRET_KEY": "x",
        }
    )
    client = app.test_client()
    assert client.get("/health/live").json == {"status": "ok"}
    ready = client.get("/health")
    assert ready.status_code == 503 and ready.json["status"] == "degraded"
    assert client.get("/metrics").status_code == 200  # without the analysis jobs


def test_an_error_is_one_json_line_with_its_traceback_and_request_id(tmp_path):
    import logging

    from api.logs import JsonFormatter

    app = create_app(
        {
            "TESTING": True,
            "PROPAGATE_EXCEPTIONS": False,
            "KAIROS_DATABASE_URL": f"sqlite:///{tmp_path}/kairos.sqlite3",
            "SECRET_KEY": "x",
        }
    )

    def boom():
        raise RuntimeError("deliberately broken")

    app.add_url_rule("/boom", view_func=boom)
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(JsonFormatter().format(record))
    logging.getLogger("api").addHandler(handler)
    try:
        answer = app.test_client().get("/boom", headers={"X-Request-Id": "broken-1"})
    finally:
        logging.getLogger("api").removeHandler(handler)
    assert answer.status_code == 500 and answer.json["code"] == 500
    assert answer.headers["X-Request-Id"] == "broken-1"
    (error,) = [json.loads(x) for x in lines if '"ERROR"' in x]
    assert error["request_id"] == "broken-1"
    assert "RuntimeError: deliberately broken" in error["traceback"]
    assert "\n" not in lines[0]


def test_a_workers_threads_asking_for_the_metrics_at_once_make_them_once(tmp_path):
    """The first requests of a new worker arrive on all its threads together; each asks for
    the metrics, and they must be made once (a second registration raised: a 500)."""
    script = (
        "import threading\n"
        "from experiments import telemetry\n"
        "start, failures = threading.Barrier(32), []\n"
        "def ask():\n"
        "    start.wait()\n"
        "    try:\n"
        "        telemetry.metrics()\n"
        "    except Exception as error:\n"
        "        failures.append(repr(error))\n"
        "threads = [threading.Thread(target=ask) for _ in range(32)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(failures or 'ok')\n"
    )
    for _ in range(5):
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=ROOT
        )
        assert done.stdout.strip() == "ok", done.stdout + done.stderr


def test_the_log_format_option_makes_the_workers_lines_json_too(tmp_path):
    """`kairos serve --log-format json` (the flag, not KAIROS_LOG_FORMAT): the CLI builds an
    app before it reads the flag, and the workers inherited that app's text handler, so only
    gunicorn's own lines were JSON while the request lines and tracebacks stayed text."""
    from tests.servers import kairos_serve

    database_url = f"sqlite:///{tmp_path}/kairos.sqlite3"
    log = tmp_path / "server.log"
    with kairos_serve(database_url, log, args=("--log-format", "json")) as served:
        requests.get(f"{served.base}/health/live", headers={"X-Request-Id": "flag-json-1"})
        requests.get(f"{served.base}/no/such/path", headers={"X-Request-Id": "flag-json-2"})
        time.sleep(0.5)
        output = served.output()
    # After the CLI's banner (stdout: the one-time token, "Kairos serving on …"), every line
    # is a JSON object: gunicorn's, Kairos's and the request lines alike.
    logged = output[output.index("Kairos serving on") :].splitlines()[1:]
    if logged and logged[0].startswith("PyMC analyses run in a thread"):
        logged = logged[1:]
    parsed = [json.loads(line) for line in logged if line.strip()]
    answered = {line.get("request_id"): line for line in parsed if line["logger"] == "api.requests"}
    assert answered["flag-json-1"]["route"] == "/health/live"
    assert answered["flag-json-2"]["status"] == 404
