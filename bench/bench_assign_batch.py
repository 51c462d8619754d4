"""Batch assignment over HTTP: 1,000 new units a request, every one stored.

On SQLite and on PostgreSQL (a throwaway server, durable settings: see bench/common.py), same
clients; PostgreSQL also with 2 `kairos serve` nodes on one database, the clients spread over
them. Target: SQLite ≥ 25,000 stored assignments/s on 2 cores (the clients run on the same
cores), PostgreSQL ≥ 1.0 × SQLite. The count of stored rows is checked against the count
answered on each.
"""

import functools
import random
import time

import orjson

from bench.common import (
    DURABILITY,
    NEWCOMERS,
    ROUNDS,
    SERVER,
    call,
    count_rows,
    experiment,
    kairos_nodes,
    measured_three_ways,
    post_bytes,
    postgres_settings_line,
    run_together,
    three_ways_rows,
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


def measure(database_url: str | None = None, nodes: int = 1) -> dict:
    """Assign on one database (SQLite, or a new one on the PostgreSQL server at
    `database_url`) served by `nodes` servers, the clients spread over them."""
    with kairos_nodes(database_url, nodes) as (bases, token, env):
        call("POST", f"{bases[0]}/v1/experiments", token, EXPERIMENT)
        call("POST", f"{bases[0]}/v1/experiments/bench-batch/start", token)
        warm: list = []
        for base in bases:
            client(base, token, 99, time.monotonic() + 2, warm)
        results: list = []
        until = time.monotonic() + SECONDS
        elapsed = run_together(
            [
                functools.partial(client, bases[w % nodes], token, w, until, results)
                for w in range(CLIENTS)
            ]
        )
        stored = count_rows(env, "assignment")
    answered = sum(a for a, _ in results)
    latencies = sorted(x for _, lat in results for x in lat)
    expected_stored = answered + sum(a for a, _ in warm)
    return {
        "rate": answered / elapsed,
        "median_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "exact": stored == expected_stored,
        "counts": f"rows stored {stored:,} = answered {expected_stored:,}: "
        f"{stored == expected_stored}",
    }


def main() -> bool:
    runs, rate = measured_three_ways(measure)
    print(
        f"{CLIENTS} clients × {SECONDS} s, {BATCH:,} new units a request, {SERVER} a node; "
        f"median of {ROUNDS} round(s), alternated"
    )
    print(DURABILITY)
    print(postgres_settings_line())
    print("\n".join(three_ways_rows("stored assignments/s", rate)))
    for name, found in runs.items():
        last = found[-1]
        print(
            f"{name}: request latency median {last['median_ms']:.0f} ms, p99 "
            f"{last['p99_ms']:.0f} ms (last round); {last['counts']}"
        )
    print("targets: SQLite ≥ 25,000 assignments/s; PostgreSQL ≥ 1.00 × SQLite; exact row counts")
    exact = all(r["exact"] for found in runs.values() for r in found)
    return rate["SQLite"] >= 25_000 and rate["PostgreSQL"] >= rate["SQLite"] and exact
