"""Kairos's Prometheus metrics: defined once here, counted where things happen, served by
api/metrics (`GET /metrics`).

The services count what they did (assignments, outcome events, reweights, write-lock waits);
the HTTP layer counts requests (api/request_telemetry.py). Analysis jobs are read from their
table when scraped (`JobsCollector` in experiments/analysis_jobs.py), because the process
that runs them (`kairos worker`, on any host) serves no HTTP.

Under gunicorn every worker is its own process, so the values live in prometheus_client's
multiprocess files (PROMETHEUS_MULTIPROC_DIR, set by `kairos serve`) and a scrape answered by
any worker sums them all. prometheus_client chooses how to keep values when a metric is first
made, from that variable; so the metrics are made on first use (`metrics()`), in the worker,
never at import (the `kairos` command imports this module before it sets the variable).
"""

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Request latencies: an assignment takes about a millisecond, a results page seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Waits for the write lock: from nothing to SQLite's busy timeout.
LOCK_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
# PyMC analyses run from seconds to an hour.


@dataclass(frozen=True)
class Metrics:
    http_requests: object
    http_duration: object
    assignments: object
    outcome_events: object
    reweights: object
    write_lock_wait: object


_MAKING = threading.Lock()


def metrics() -> Metrics:
    """The metrics of this process, made on first use (see the module's docstring); once,
    even when a worker's threads all ask at once (a second registration would raise)."""
    with _MAKING:
        return _made()


@cache
def _made() -> Metrics:
    from prometheus_client import Counter, Histogram, disable_created_metrics, values

    # The way values are kept, as the environment says now (not as it said at import).
    values.ValueClass = values.get_value_class()
    disable_created_metrics()  # a `_created` series per counter says nothing Kairos needs
    return Metrics(
        http_requests=Counter(
            "kairos_http_requests",
            "HTTP requests answered, by route (the URL rule, not the path), method and status.",
            ["route", "method", "status"],
        ),
        http_duration=Histogram(
            "kairos_http_request_duration_seconds",
            "Time to answer an HTTP request, by route and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
        ),
        assignments=Counter(
            "kairos_assignments",
            "Units answered by the assignment service, by outcome: a new assignment to a "
            "variant ('assigned') or to the holdout ('holdout'), a unit's stored assignment "
            "answered again ('repeated'), or a concluded experiment's winner ('winner').",
            ["outcome"],
        ),
        outcome_events=Counter(
            "kairos_outcome_events",
            "Outcome events received, by result: 'accepted' (stored; attributed or not), "
            "'duplicate' (stored before or repeated), 'unattributed' (of the accepted, stored "
            "without an assignment).",
            ["result"],
        ),
        reweights=Counter(
            "kairos_reweights",
            "Allocation periods opened by a reweight, by trigger ('scheduled': due and claimed "
            "by an assignment; 'manual': POST …/reweight).",
            ["trigger"],
        ),
        write_lock_wait=Histogram(
            "kairos_db_write_lock_wait_seconds",
            "Time a group of writes waited for the database's write lock (SQLite; PostgreSQL "
            "has no such lock, its row locks are waited for inside the statements).",
            buckets=LOCK_WAIT_BUCKETS,
        ),
    )


def count_assignments(*, assigned: int = 0, holdout: int = 0, repeated: int = 0, winner: int = 0):
    counter = metrics().assignments
    for outcome, n in (
        ("assigned", assigned),
        ("holdout", holdout),
        ("repeated", repeated),
        ("winner", winner),
    ):
        if n:
            counter.labels(outcome).inc(n)


def count_outcome_events(*, accepted: int, duplicates: int, unattributed: int) -> None:
    counter = metrics().outcome_events
    for result, n in (
        ("accepted", accepted),
        ("duplicate", duplicates),
        ("unattributed", unattributed),
    ):
        if n:
            counter.labels(result).inc(n)


def count_reweight(trigger: str) -> None:
    metrics().reweights.labels(trigger).inc()


@contextmanager
def waiting_for_write_lock() -> Iterator[None]:
    """Time the block as a wait for the database's write lock."""
    started = time.perf_counter()
    yield
    metrics().write_lock_wait.observe(time.perf_counter() - started)


def exposition(collectors=()) -> tuple[bytes, str]:
    """The text a scrape answers and its content type: every process's metrics (summed over
    the workers in multiprocess mode), then what `collectors` read when scraped."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
    from prometheus_client.multiprocess import MultiProcessCollector

    metrics()  # every metric is listed, from the first scrape on
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROCESS_DIR):
        MultiProcessCollector(registry)
        text = b""
    else:
        text = generate_latest(REGISTRY)
    for collector in collectors:
        registry.register(collector)
    return text + generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4


def forget_process(pid: int) -> None:
    """A worker process is gone: drop its live gauges' files (its counters stay, summed)."""
    from prometheus_client import multiprocess

    if os.environ.get(MULTIPROCESS_DIR):
        multiprocess.mark_process_dead(pid)
