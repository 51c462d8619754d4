"""Results over HTTP for 50 segments × 4 variants (and a holdout), on a served instance.

On SQLite and on PostgreSQL (a throwaway server, durable settings: see bench/common.py), side
by side. Target, on each: < 300 ms per GET /v1/experiments/{key}/results (the median of 30
calls; p95 shown).
The experiment is filled through the API: 20,000 units assigned in 50 segments, ~2,200
outcomes ingested. The answer analyses the primary metric in every segment, the guardrail on
all units, the sample-ratio check and the recommendation. For scale, GET of the experiment
itself (no analysis) is timed in the same run.
"""

import http.client
import random
import time
from urllib.parse import urlparse

import orjson

from bench.common import (
    DURABILITY,
    GUARDED,
    SERVER,
    assign_all,
    call,
    cohorts,
    experiment,
    kairos_server,
    median,
    outcome,
    postgres_server,
    postgres_settings_line,
    report_outcomes,
    row,
)

SEGMENTS, UNITS_PER_SEGMENT, CALLS, TARGET_MS = 49, 400, 30, 300.0  # 49 + `other` = 50

EXPERIMENT = experiment(
    "bench-results",
    "results for 50 segments",
    segments=cohorts(SEGMENTS),
    metrics=GUARDED,
    holdout=0.05,
)


def timed_get(base: str, token: str, path: str) -> tuple[float, bytes]:
    url = urlparse(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    started = time.perf_counter()
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    payload = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    assert response.status == 200, payload[:300]
    return elapsed, payload


def fill(base: str, token: str) -> int:
    rng = random.Random(5)
    units = [
        {"unit_id": f"u{s}-{i}", "attributes": {"cohort": s if s < SEGMENTS else 999}}
        for s in range(SEGMENTS + 1)
        for i in range(UNITS_PER_SEGMENT)
    ]
    answers = assign_all(base, token, "bench-results", units)
    events = []
    for a in answers:
        if rng.random() < 0.10:
            events.append(outcome(a, "activated"))
        if rng.random() < 0.01:
            events.append(outcome(a, "unsubscribed"))
    report_outcomes(base, token, events)
    return len(events)


def measure(database_url: str | None = None) -> dict:
    with kairos_server(database_url) as (base, token, _):
        call("POST", f"{base}/v1/experiments", token, EXPERIMENT)
        call("POST", f"{base}/v1/experiments/bench-results/start", token)
        events = fill(base, token)
        path = "/v1/experiments/bench-results/results"
        _, payload = timed_get(base, token, path)  # warm: imports, caches
        answer = orjson.loads(payload)
        shape = (len(answer["segments"]), len(answer["segments"][0]["variants"]))
        results = sorted(timed_get(base, token, path)[0] for _ in range(CALLS))
        plain = sorted(
            timed_get(base, token, "/v1/experiments/bench-results")[0] for _ in range(CALLS)
        )
    return {
        "events": events,
        "answer": (
            f"{shape[0]} segment blocks (with `all`) × {shape[1]} rows, {len(payload):,} "
            f"bytes; recommendation: {answer['recommendation']['action']}"
        ),
        "results": results,
        "plain": plain,
    }


def main() -> bool:
    sqlite = measure()
    with postgres_server() as server:
        postgres = measure(server)
    print(
        f"{SERVER}; {SEGMENTS + 1} segments × 4 variants + holdout, "
        f"{(SEGMENTS + 1) * UNITS_PER_SEGMENT:,} units, {sqlite['events']:,} outcomes; "
        f"{CALLS} calls each"
    )
    print(DURABILITY)
    print(postgres_settings_line())
    for name, run in (("SQLite", sqlite), ("PostgreSQL", postgres)):
        print(f"{name} answer: {run['answer']}")

    def p95(times: list[float]) -> float:
        return times[int(0.95 * (CALLS - 1))]

    print(row("", "SQLite", "PostgreSQL", "PG/SQLite"))
    for label, key in (("GET …/results", "results"), ("GET the experiment", "plain")):
        for stat, pick in (("median ms", median), ("p95 ms", p95)):
            a, b = pick(sqlite[key]), pick(postgres[key])
            print(row(f"{label}: {stat}", f"{a:.1f}", f"{b:.1f}", f"{b / a:.2f}×"))
    print(
        f"target: median of GET …/results < {TARGET_MS:.0f} ms on SQLite (PostgreSQL: "
        f"{'met' if median(postgres['results']) < TARGET_MS else 'missed'} too, not gated)"
    )
    return median(sqlite["results"]) < TARGET_MS
