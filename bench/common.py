"""Shared pieces of the benchmarks: servers on loopback, wrk runs, medians, printing."""

import contextlib
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
# Rounds of the benchmarks that compare SQLite and PostgreSQL, alternated; their medians.
ROUNDS = int(os.environ.get("KAIROS_BENCH_ROUNDS", 1))


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
    """`kairos serve` on a fresh SQLite file, or on a fresh database of the PostgreSQL server
    at `database_url`; yields (base URL, admin token, env)."""
    with kairos_nodes(database_url) as (bases, token, env):
        yield bases[0], token, env


@contextmanager
def kairos_nodes(database_url: str | None = None, nodes: int = 1):
    """`nodes` × `kairos serve`, each on its own port, all on one fresh database (a SQLite file,
    or a new database of the PostgreSQL server at `database_url`); yields (base URLs, admin
    token, env)."""
    workdir = Path(tempfile.mkdtemp(prefix="kairos-bench-"))
    env = {
        **os.environ,
        "KAIROS_DATABASE_URL": database_url or f"sqlite:///{workdir}/kairos.sqlite3",
        "KAIROS_SECRET_KEY": "bench",
        "KAIROS_LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["KAIROS_DATABASE_URL"] = fresh_postgres_database(database_url)
        subprocess.run(
            [str(BIN / "kairos"), "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL
        )
    processes, logs, bases = [], [], []
    try:
        token = None
        for node in range(nodes):
            port = free_port()
            log = (workdir / f"server-{node}.log").open("w+")
            logs.append(log)
            processes.append(
                subprocess.Popen(
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
            )
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/health")
            bases.append(base)
            if token is None:  # the first node made the admin key; the others find one
                log.seek(0)
                token = re.search(r"^\s+(kairos_\S+)\s*$", log.read(), re.M).group(1)
        yield bases, token, env
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        for log in logs:
            log.close()
        shutil.rmtree(workdir, ignore_errors=True)


# The PostgreSQL server the benchmarks measure beside SQLite: as durable as a deployment's
# (an acknowledged commit is fsynced to the WAL first, so it survives a crash of the database
# server and of the machine), with memory settings a deployment would give it.
POSTGRES_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "512MB",
    "wal_buffers": "16MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "max_connections": "200",
}
DURABILITY = (
    "SQLite: WAL, synchronous=NORMAL: a commit is written to the WAL file (the OS's cache) "
    "before the answer, not fsynced; it survives a crash of the server process, an OS crash "
    "or power cut may lose the last commits (the file stays consistent).\n"
    "PostgreSQL: synchronous_commit=on, fsync=on: a commit is fsynced to the WAL before the "
    "answer; it survives a crash of the database server and of the OS (stronger than SQLite's)."
)


def postgres_settings_line(settings: dict[str, str] = POSTGRES_SETTINGS) -> str:
    return "PostgreSQL settings: " + ", ".join(f"{k}={v}" for k, v in settings.items())


@contextmanager
def postgres_server(settings: dict[str, str] = POSTGRES_SETTINGS):
    """A throwaway PostgreSQL server (tests/pg.py's cluster) with `settings`; yields its URL.
    KAIROS_BENCH_POSTGRES_URL names a server of your own instead."""
    own = os.environ.get("KAIROS_BENCH_POSTGRES_URL")
    if own:
        yield own
        return
    sys.path.insert(0, str(ROOT))
    from tests.pg import PostgresCluster

    cluster = PostgresCluster(settings)
    url = cluster.start()
    try:
        yield url
    finally:
        cluster.stop()


def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the server at `server_url`; its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"kairos_bench_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(_psycopg_url(url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def _psycopg_url(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def count_rows(env: dict, table: str) -> int:
    """Rows in a table of the served database, SQLite or PostgreSQL."""
    from sqlalchemy.engine import make_url

    url = make_url(env["KAIROS_DATABASE_URL"])
    if url.get_backend_name() == "sqlite":
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.database)) as connection:
            return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    import psycopg

    with psycopg.connect(_psycopg_url(url)) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


sqlite_count = count_rows  # the name the benchmarks used when they measured SQLite only


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


def side_by_side(label: str, sqlite: float, postgres: float, unit: str = "") -> str:
    """A row of both databases' figures and PostgreSQL's ratio to SQLite."""
    return row(label, f"{sqlite:,.0f}{unit}", f"{postgres:,.0f}{unit}", f"{postgres / sqlite:.2f}×")


THREE_WAYS = ("SQLite", "PostgreSQL", "PostgreSQL, 2 nodes")


def measured_three_ways(measure) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """`measure(database_url=None, nodes=1)` on SQLite, on PostgreSQL and on 2 nodes of one
    PostgreSQL, ROUNDS times alternated (so that drift, other load, hits each alike): every
    run by name, and the median of their "rate"s."""
    runs: dict[str, list[dict]] = {name: [] for name in THREE_WAYS}
    with postgres_server() as server:
        for _ in range(ROUNDS):
            runs["SQLite"].append(measure())
            runs["PostgreSQL"].append(measure(server))
            runs["PostgreSQL, 2 nodes"].append(measure(server, nodes=2))
    rate = {name: statistics.median([r["rate"] for r in found]) for name, found in runs.items()}
    return runs, rate


def three_ways_rows(label: str, rate: dict[str, float]) -> list[str]:
    """The header and the two rows of a measurement made `measured_three_ways`."""
    two_nodes = rate["PostgreSQL, 2 nodes"]
    return [
        row("", "SQLite", "PostgreSQL", "PG/SQLite"),
        side_by_side(f"{label} (1 node)", rate["SQLite"], rate["PostgreSQL"]),
        row(
            f"{label}, 2 nodes, one database",
            "",
            f"{two_nodes:,.0f}",
            f"{two_nodes / rate['SQLite']:.2f}×",
        ),
    ]
