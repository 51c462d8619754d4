"""Batch outcome ingestion over HTTP: 1,000 events a request, 10% of them duplicates.

Target: ≥ 25,000 events/s on 2 cores (the clients run on the same cores), with exact counts:
accepted = distinct events, duplicates = the rest, rows stored = distinct events, and the
maintained statistics equal a rebuild from raw rows (`kairos stats check`).
"""

import queue
import random
import subprocess

import orjson

from bench.common import (
    BIN,
    NEWCOMERS,
    SERVER,
    call,
    experiment,
    kairos_server,
    post_bytes,
    run_together,
    sqlite_count,
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


def main() -> bool:
    with kairos_server() as (base, token, env):
        call("POST", f"{base}/v1/experiments", token, EXPERIMENT)
        call("POST", f"{base}/v1/experiments/bench-outcomes/start", token)
        units = [f"{random.getrandbits(40):010x}-{i}" for i in range(UNITS)]
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

        def client():
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                answers.append(post(base, token, "/v1/outcomes/batch", body))

        elapsed = run_together([client] * CLIENTS)
        stored = sqlite_count(env, "outcome")
        check = subprocess.run(
            [str(BIN / "kairos"), "stats", "check", "bench-outcomes"],
            env=env,
            capture_output=True,
            text=True,
        )
    accepted = sum(a["accepted"] for a in answers)
    duplicates = sum(a["duplicates"] for a in answers)
    rate = sent / elapsed
    exact = accepted == distinct == stored and duplicates == sent - distinct
    print(
        f"{len(bodies)} requests of {BATCH:,} events ({DUPLICATE_SHARE:.0%} repeats), "
        f"{CLIENTS} clients, SQLite, {SERVER}"
    )
    print(f"events ingested/s: {rate:,.0f} (target ≥ 25,000)")
    print(
        f"accepted {accepted:,} = distinct {distinct:,} = stored {stored:,}; duplicates "
        f"{duplicates:,} = sent − distinct {sent - distinct:,}: {exact}"
    )
    print(f"statistics vs rebuild from raw rows: {check.stdout.strip() or check.stderr.strip()}")
    return rate >= 25_000 and exact and check.returncode == 0
