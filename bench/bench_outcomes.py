"""Batch outcome ingestion over HTTP: 1,000 events a request, 10% of them duplicates.

On SQLite and on PostgreSQL (a throwaway server, durable settings: see bench/common.py), same
clients, same events; PostgreSQL also with 2 `kairos serve` nodes on one database.
Target: SQLite ≥ 25,000 events/s on 2 cores (the clients run on the same cores), PostgreSQL
≥ 1.0 × SQLite, with exact counts on each: accepted = distinct events, duplicates = the rest,
rows stored = distinct events, and the maintained statistics equal a rebuild from raw rows
(`kairos stats check`).
"""

import functools
import queue
import random
import subprocess

import orjson

from bench.common import (
    BIN,
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

UNITS, EVENTS_PER_UNIT, BATCH, CLIENTS, DUPLICATE_SHARE = 60_000, 4, 1_000, 4, 0.10

EXPERIMENT = experiment(
    "bench-outcomes",
    "outcome ingestion",
    segments=NEWCOMERS,
    metrics=[
        {"key": "activated", "role": "primary"},
        {"key": "revenue", "type": "continuous", "role": "secondary"},
    ],
    holdout=0.05,
)


def post(base: str, token: str, path: str, body: bytes) -> dict:
    status, payload = post_bytes(base, token, path, body)
    assert status in (200, 202), payload[:300]
    return orjson.loads(payload)


def build_bodies(units: list[str]) -> tuple[list[bytes], int, int]:
    """Request bodies of BATCH events, DUPLICATE_SHARE of them repeats of earlier events."""
    rng = random.Random(7)
    distinct = []
    for i, unit in enumerate(units):
        kinds = [("activated", 1), ("revenue", round(rng.uniform(1, 50), 2))]
        for j in range(EVENTS_PER_UNIT):
            metric, value = kinds[j % 2]
            distinct.append(
                {
                    "event_id": f"evt-{i}-{j}",
                    "experiment": "bench-outcomes",
                    "unit_id": unit,
                    "metric": metric,
                    "value": value,
                }
            )
    rng.shuffle(distinct)
    fresh_per_batch = int(BATCH * (1 - DUPLICATE_SHARE))
    bodies, sent, seen = [], 0, []
    for start in range(0, len(distinct), fresh_per_batch):
        fresh = distinct[start : start + fresh_per_batch]
        pool = seen[-50_000:] or fresh
        repeats = [rng.choice(pool) for _ in range(BATCH - len(fresh))]
        events = fresh + repeats
        rng.shuffle(events)
        bodies.append(orjson.dumps({"events": events}))
        seen += fresh
        sent += len(events)
    return bodies, len(distinct), sent


def measure(database_url: str | None = None, nodes: int = 1) -> dict:
    """Ingest the events on one database (SQLite, or a new one on the PostgreSQL server at
    `database_url`) served by `nodes` servers, the clients spread over them."""
    with kairos_nodes(database_url, nodes) as (bases, token, env):
        base = bases[0]
        call("POST", f"{base}/v1/experiments", token, EXPERIMENT)
        call("POST", f"{base}/v1/experiments/bench-outcomes/start", token)
        rng = random.Random(11)
        units = [f"{rng.getrandbits(40):010x}-{i}" for i in range(UNITS)]
        for start in range(0, UNITS, 10_000):
            chunk = units[start : start + 10_000]
            body = {
                "experiment": "bench-outcomes",
                "units": [{"unit_id": u, "attributes": {"days_since_signup": 3}} for u in chunk],
            }
            post(base, token, "/v1/assignments/batch", orjson.dumps(body))
        bodies, distinct, sent = build_bodies(units)
        work: queue.Queue = queue.Queue()
        for body in bodies:
            work.put(body)
        answers: list[dict] = []

        def client(base: str):
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                answers.append(post(base, token, "/v1/outcomes/batch", body))

        elapsed = run_together(
            [functools.partial(client, bases[i % nodes]) for i in range(CLIENTS)]
        )
        stored = count_rows(env, "outcome")
        check = subprocess.run(
            [str(BIN / "kairos"), "stats", "check", "bench-outcomes"],
            env=env,
            capture_output=True,
            text=True,
        )
    accepted = sum(a["accepted"] for a in answers)
    duplicates = sum(a["duplicates"] for a in answers)
    exact = accepted == distinct == stored and duplicates == sent - distinct
    return {
        "rate": sent / elapsed,
        "requests": len(bodies),
        "exact": exact,
        "counts": (
            f"accepted {accepted:,} = distinct {distinct:,} = stored {stored:,}; duplicates "
            f"{duplicates:,} = sent − distinct {sent - distinct:,}: {exact}"
        ),
        "check_ok": check.returncode == 0,
        "check": check.stdout.strip() or check.stderr.strip(),
    }


def main() -> bool:
    runs, rate = measured_three_ways(measure)
    print(
        f"{runs['SQLite'][0]['requests']} requests of {BATCH:,} events ({DUPLICATE_SHARE:.0%} "
        f"repeats), {CLIENTS} clients, {SERVER} a node; median of {ROUNDS} round(s), alternated"
    )
    print(DURABILITY)
    print(postgres_settings_line())
    print("\n".join(three_ways_rows("events ingested/s", rate)))
    for name, found in runs.items():
        print(f"{name}: {found[-1]['counts']} (last round)")
        print(f"{name}: statistics vs rebuild from raw rows: {found[-1]['check']}")
    print(
        "targets: SQLite ≥ 25,000 events/s; PostgreSQL ≥ 1.00 × SQLite; exact counts and "
        "statistics on every run"
    )
    exact = all(r["exact"] and r["check_ok"] for found in runs.values() for r in found)
    return rate["SQLite"] >= 25_000 and rate["PostgreSQL"] >= rate["SQLite"] and exact
