"""Shared pieces of the benchmarks: servers on loopback, wrk runs, medians, printing."""

import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# `kairos serve` defaults, used for every server measured (override to explore).
WORKERS = int(os.environ.get("KAIROS_BENCH_WORKERS", 2))
THREADS = int(os.environ.get("KAIROS_BENCH_THREADS", 4))


CHANNEL = {"channel": ["email", "push"]}
TIMING_BY_CHANNEL = {"timing": ["morning", "evening"], **CHANNEL}
NEWCOMERS = [
    {"key": "newcomers", "rule": {"attribute": "days_since_signup", "op": "lt", "value": 14}}
]
GUARDED = [
    {"key": "activated", "role": "primary"},
    {"key": "unsubscribed", "role": "guardrail", "margin": 0.002},
]


def cohorts(n: int) -> list[dict]:
    """n segments `cohort-0`…, by the unit's attribute `cohort` (units of no cohort: `other`)."""
    return [
        {"key": f"cohort-{i}", "rule": {"attribute": "cohort", "op": "eq", "value": i}}
        for i in range(n)
    ]


def experiment(key: str, name: str, **fields) -> dict:
    """A benchmark's experiment: timing × channel, morning email the control, unless `fields`
    say otherwise."""
    return {
        "key": key,
        "name": f"Bench: {name}",
        "factors": TIMING_BY_CHANNEL,
        "control": "timing=morning,channel=email",
        **fields,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def kairos_server(database_url: str | None = None):
    """`kairos serve` on a fresh SQLite file; yields (base URL, admin token, env)."""
    workdir = Path(tempfile.mkdtemp(prefix="kairos-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "KAIROS_DATABASE_URL": database_url or f"sqlite:///{workdir}/kairos.sqlite3",
        "KAIROS_SECRET_KEY": "bench",
        "KAIROS_LOG_LEVEL": "WARNING",
    }
    log = (workdir / "server.log").open("w+")
    process = subprocess.Popen(
        [
            str(BIN / "kairos"),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
            "--threads",
            str(THREADS),
            *os.environ.get("KAIROS_BENCH_SERVE_ARGS", "").split(),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health")
        log.seek(0)
        token = re.search(r"^\s+(kairos_\S+)\s*$", log.read(), re.M).group(1)
        yield base, token, env
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def echo_server():
    port = free_port()
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "bench.echo_app:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(WORKERS),
            "--threads",
            str(THREADS),
            "--worker-class",
            "gthread" if THREADS > 1 else "sync",  # as `kairos serve` chooses
            "--reuse-port",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def call(method: str, url: str, token: str | None = None, body=None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read() or b"null")


def post_bytes(base: str, token: str, path: str, body: bytes) -> tuple[int, bytes]:
    """POST a ready JSON body on a new connection: a kept-alive one stays with the gunicorn
    worker that accepted it, and a few clients would then load one worker and idle the other."""
    url = urlparse(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, payload


def run_together(targets) -> float:
    """Run the callables in threads at once; the seconds until the last one finished."""
    import threading

    started = time.monotonic()
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def sqlite_count(env: dict, table: str) -> int:
    """Rows in a table of the served SQLite database."""
    import sqlite3

    path = env["KAIROS_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def assign_all(base: str, token: str, experiment: str, units: list[dict]) -> list[dict]:
    """Assign units through the batch endpoint, 10,000 a request; the answers in order."""
    import orjson

    answers = []
    for start in range(0, len(units), 10_000):
        body = orjson.dumps({"experiment": experiment, "units": units[start : start + 10_000]})
        status, payload = post_bytes(base, token, "/v1/assignments/batch", body)
        assert status == 200, payload[:300]
        answers += orjson.loads(payload)["assignments"]
    return answers


def report_outcomes(base: str, token: str, events: list[dict]) -> None:
    import orjson

    for start in range(0, len(events), 10_000):
        body = orjson.dumps({"events": events[start : start + 10_000]})
        status, payload = post_bytes(base, token, "/v1/outcomes/batch", body)
        assert status == 202, payload[:300]


def outcome(answer: dict, metric: str) -> dict:
    """An outcome event of `metric` for an assignment answer."""
    return {
        "event_id": f"{metric}-{answer['unit_id']}",
        "assignment_id": answer["assignment_id"],
        "metric": metric,
    }


SERVER = f"gunicorn {WORKERS} workers × {THREADS} threads"


def need(command: str, package: str) -> str:
    found = shutil.which(command)
    if not found:
        raise SystemExit(f"{command} is needed: apt-get install {package}")
    return found


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, script: str, connections: int, seconds: int, threads: int = 2) -> dict:
    """Run wrk with a Lua script; requests/s, latency percentiles (ms) and error counts."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    result = subprocess.run(
        [
            need("wrk", "wrk"),
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            handle.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(handle.name)
    out = result.stdout
    latencies = {
        p: float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latencies.get("50"),
        "p99": latencies.get("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "raw": out,
    }


def median(values):
    return statistics.median(values)


def row(*cells, widths=(44, 16, 16, 12)) -> str:
    return "".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False))
