"""Batch assignment over HTTP: 1,000 new units a request, every one stored.

Target: ≥ 25,000 stored assignments/s on 2 cores (the client runs on the same cores).
The count of stored rows is checked against the count answered.
"""

import functools
import random
import time

import orjson

from bench.common import (
    NEWCOMERS,
    SERVER,
    call,
    experiment,
    kairos_server,
    post_bytes,
    run_together,
    sqlite_count,
)

BATCH, CLIENTS, SECONDS = 1_000, 4, 20

EXPERIMENT = experiment(
    "bench-batch",
    "batch assignments",
    allocation="thompson",
    segments=NEWCOMERS,
    metrics=[{"key": "activated", "role": "primary"}],
    holdout=0.05,
)


def client(base: str, token: str, worker: int, deadline: float, results: list) -> None:
    sent = answered = 0
    latencies = []
    while time.monotonic() < deadline:
        units = [
            {
                # Random-looking, as real user ids are (sequential ones flatter the indexes).
                "unit_id": f"{random.getrandbits(40):010x}-w{worker}-{sent + i}",
                "attributes": {"days_since_signup": i % 30},
                "timezone": "Europe/Paris",
            }
            for i in range(BATCH)
        ]
        body = orjson.dumps({"experiment": "bench-batch", "units": units})
        started = time.perf_counter()
        status, payload = post_bytes(base, token, "/v1/assignments/batch", body)
        latencies.append(time.perf_counter() - started)
        assert status == 200, payload[:300]
        answered += len(orjson.loads(payload)["assignments"])
        sent += BATCH
    results.append((answered, latencies))


def main() -> bool:
    with kairos_server() as (base, token, env):
        call("POST", f"{base}/v1/experiments", token, EXPERIMENT)
        call("POST", f"{base}/v1/experiments/bench-batch/start", token)
        warm: list = []
        client(base, token, 99, time.monotonic() + 2, warm)
        results: list = []
        until = time.monotonic() + SECONDS
        elapsed = run_together(
            [functools.partial(client, base, token, w, until, results) for w in range(CLIENTS)]
        )
        stored = sqlite_count(env, "assignment")
    answered = sum(a for a, _ in results)
    latencies = sorted(x for _, lat in results for x in lat)
    rate = answered / elapsed
    expected_stored = answered + warm[0][0]
    print(f"{CLIENTS} clients × {SECONDS} s, {BATCH:,} new units a request, SQLite, {SERVER}")
    print(f"stored assignments/s: {rate:,.0f} (target ≥ 25,000)")
    print(
        f"request latency: median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms"
    )
    print(f"rows stored {stored:,} = answered {expected_stored:,}: {stored == expected_stored}")
    return rate >= 25_000 and stored == expected_stored
