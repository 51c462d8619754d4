"""A sustained mixed load, as a lifecycle-messaging service sees it, on SQLite and PostgreSQL.

Target: no error (every answer a 2xx: no 5xx, no connection error, no refusal) and nothing
lost (assignments stored = distinct assignments acknowledged, outcome rows stored = distinct
events acknowledged, the maintained statistics equal a rebuild from raw rows), on both
databases. p50/p99/max latencies are printed, not gated.

The mix, per second at the default load (KAIROS_BENCH_LOAD scales every rate), and why:

- single assignments, 120/s (~95% of requests): a journey engine asks once per message it is
  about to send, as each user reaches a step; a third of those users were assigned before (a
  later step of the same journey) and get their sticky answer back.
- assignment batches of 100–1,000 units, 0.5/s (~275 units/s): scheduled campaigns (a
  digest, a win-back sweep) assign their audience in chunks.
- outcome batches of 100–1,000 events with 10% resends, 0.5/s (~275 events/s): an event
  pipeline flushes activations, suppressions and unsubscribes every few seconds, at least
  once: a retried flush resends events already acknowledged. Half name the assignment, half
  the experiment and unit.
- results, 1/s (~1%): dashboards refreshing and analysts reading; a quarter ask for one
  metric and segment.
- learnings queries, 2/s (~2%): analysts searching the registry: filters, full text `q`,
  sorts, pages, the pooled evidence.
- a reweight every 10 s: a bandit reweights every 15 minutes in production; compressed here
  so that a run sees several, under load.

That is ~355 units assigned and ~275 events reported a second (~0.8 event per unit
assigned: most users never activate, few unsubscribe, some messages are suppressed). The
absolute rate is set by PostgreSQL: on these 2 cores, shared with its server and the
clients, it falls behind at about twice this load (single assignments alone: ~230/s, with a
p99 of seconds), while SQLite holds it; at the default both are measured below their knee,
so their latencies compare. KAIROS_BENCH_LOAD=2 shows PostgreSQL past it.

Open loop at fixed arrival rates: each client thread sends on its own schedule (fixed
intervals, a random phase per thread), whatever the server answers, over one keep-alive
connection (http.client; reconnected after an idle second, before gunicorn's two-second
keep-alive would close it). Latency is measured from when a request was due, not when it was
sent, so a server that falls behind is charged for the requests waiting behind (no
coordinated omission, as wrk2 measures); a thread that falls behind sends back to back until
it catches up or the time is up, and what was still due then is counted as `unsent`. The
clients are Python threads in this process,
on the same two cores as the server: they take CPU from it, and their own scheduling adds to
the latencies.

Both databases run in the same invocation with the same clients and the same seeded mix:
SQLite (the embedded default) first, then a throwaway PostgreSQL 15 cluster (tests/pg.py,
fsync off). KAIROS_BENCH_SECONDS (default 60) is each database's load time.
"""

import http.client
import itertools
import math
import os
import random
import subprocess
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import orjson

from bench.common import (
    BIN,
    GUARDED,
    NEWCOMERS,
    SERVER,
    call,
    cohorts,
    experiment,
    kairos_server,
)

SECONDS = float(os.environ.get("KAIROS_BENCH_SECONDS", 60))
LOAD = float(os.environ.get("KAIROS_BENCH_LOAD", 1.0))
DATABASES = os.environ.get("KAIROS_BENCH_DATABASES", "sqlite,postgresql").split(",")
IDLE_RECONNECT = 1.0  # seconds; gunicorn closes a keep-alive connection idle for 2
RESEND_SHARE = 0.10
REPEAT_SHARE = 1 / 3  # single assignments of a unit assigned before
SEED_UNITS = 3_000  # per experiment, before the load

FIXED = experiment(
    "mixed-onboarding",
    "mixed load, fixed split",
    segments=NEWCOMERS + cohorts(3),
    metrics=GUARDED,
    holdout=0.05,
    timezone="Europe/Paris",
)
BANDIT = experiment(
    "mixed-winback",
    "mixed load, bandit",
    segments=cohorts(3),
    metrics=GUARDED,
    allocation="thompson",
    # Reweights on demand only (the `reweight` traffic), not by the clock, so that every
    # reweight of a run is counted in the table.
    bandit={"update_every_seconds": 86_400, "min_weight": 0.01, "min_units_per_arm": 50},
)
EXPERIMENTS = [FIXED["key"], BANDIT["key"]]
TIMEZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", None]

MANUAL_LEARNINGS = [
    ("Interviews: newcomers read their notifications on the morning commute.", "newcomers"),
    ("Survey: churned users found evening pushes intrusive, especially on weekdays.", None),
    ("Support tickets mention duplicate emails after password resets.", None),
    ("Win-back emails with a personal tone were opened more by long-dormant users.", "cohort-1"),
    ("Push at lunchtime converted poorly for commuters in an earlier quarter.", "cohort-0"),
    ("Interviews: power users want fewer reminders and a weekly digest instead.", "cohort-2"),
]
LEARNING_QUERIES = [
    "/v1/learnings?q=morning+commute",
    "/v1/learnings?q=evening&metric=activated",
    "/v1/learnings?q=evening+pushes&tag=research",
    "/v1/learnings?segment=newcomers&metric=activated&factor=channel&sort=-lift",
    f"/v1/learnings?experiment={FIXED['key']}&verdict=inconclusive&page_size=20",
    "/v1/learnings?tag=q4-2026&sort=-date&page=2&page_size=10",
    "/v1/learnings?metric=unsubscribed&factor=timing",
    "/v1/learnings/evidence?segment=all&metric=activated&factor=channel&level=push",
]


# What the clients were told: the distinct assignments and events acknowledged, and the units
# that later requests (repeats, outcomes) draw on.
@dataclass
class Ledger:
    assignment_ids: set = field(default_factory=set)
    units: dict = field(default_factory=lambda: {key: [] for key in EXPERIMENTS})
    answers: list = field(default_factory=list)  # (assignment_id, experiment, unit_id)
    event_ids: set = field(default_factory=set)
    events: list = field(default_factory=list)  # acknowledged events, for resends
    accepted: int = 0
    duplicates: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def assigned(self, key: str, answers: list[dict]) -> None:
        with self.lock:
            for answer in answers:
                if answer["assignment_id"] not in self.assignment_ids:
                    self.assignment_ids.add(answer["assignment_id"])
                    self.units[key].append(answer["unit_id"])
                    self.answers.append((answer["assignment_id"], key, answer["unit_id"]))

    def reported(self, events: list[dict], answer: dict) -> None:
        with self.lock:
            for event in events:
                if event["event_id"] not in self.event_ids:
                    self.event_ids.add(event["event_id"])
                    self.events.append(event)
            self.accepted += answer["accepted"]
            self.duplicates += answer["duplicates"]


# One thread's counts and latencies for one kind of traffic.
@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    unavailable: int = 0  # 503s, also counted in errors
    behind: int = 0  # due before the end but not sent: the server (or client) fell behind
    items: int = 0
    latencies: list = field(default_factory=list)  # seconds, from when each request was due
    first_errors: list = field(default_factory=list)

    def add(self, other: "Tally") -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.unavailable += other.unavailable
        self.behind += other.behind
        self.items += other.items
        self.latencies += other.latencies
        self.first_errors += other.first_errors[: 3 - len(self.first_errors)]


class Connection:
    """One keep-alive HTTP/1.1 connection, opened anew after an idle second or an error."""

    def __init__(self, base: str, token: str):
        url = urlparse(base)
        self.host, self.port = url.hostname, url.port
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.connection = None
        self.last_used = 0.0

    def send(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self.connection and time.monotonic() - self.last_used > IDLE_RECONNECT:
            self.close()
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            self.connection.request(method, path, body=body, headers=self.headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        self.last_used = time.monotonic()
        if response.will_close:
            self.close()
        return response.status, payload

    def close(self) -> None:
        if self.connection:
            self.connection.close()
        self.connection = None


# The requests of one kind of traffic; each returns (method, path, body, items, on_success).
class Traffic:
    def __init__(self, ledger: Ledger, rng: random.Random, stream: int):
        self.ledger, self.rng, self.stream = ledger, rng, stream
        self.counter = itertools.count()

    def new_unit(self) -> dict:
        rng = self.rng
        unit = {
            "unit_id": f"u{rng.getrandbits(48):012x}-{self.stream}-{next(self.counter)}",
            "attributes": {"days_since_signup": rng.randrange(60), "cohort": rng.randrange(4)},
        }
        timezone = rng.choice(TIMEZONES)
        if timezone:
            unit["timezone"] = timezone
        return unit

    def experiment(self) -> str:
        return FIXED["key"] if self.rng.random() < 2 / 3 else BANDIT["key"]

    def assign(self):
        key = self.experiment()
        known = self.ledger.units[key]
        if known and self.rng.random() < REPEAT_SHARE:
            unit = {"unit_id": self.rng.choice(known)}
        else:
            unit = self.new_unit()
        body = orjson.dumps({"experiment": key, **unit})
        return "POST", "/v1/assignments", body, 1, lambda a: self.ledger.assigned(key, [a])

    def assign_batch(self):
        key = self.experiment()
        units = [self.new_unit() for _ in range(self.rng.randint(100, 1_000))]
        body = orjson.dumps({"experiment": key, "units": units})
        done = lambda a: self.ledger.assigned(key, a["assignments"])  # noqa: E731
        return "POST", "/v1/assignments/batch", body, len(units), done

    def outcome_batch(self):
        rng, size = self.rng, self.rng.randint(100, 1_000)
        acknowledged = self.ledger.events
        resends = (
            [rng.choice(acknowledged) for _ in range(round(size * RESEND_SHARE))]
            if (acknowledged)
            else []
        )
        fresh = []
        for _ in range(size - len(resends)):
            assignment_id, key, unit_id = rng.choice(self.ledger.answers)
            metric = rng.choices(["activated", "suppressed", "unsubscribed"], [6, 3, 1])[0]
            event = {"event_id": f"e{self.stream}-{next(self.counter)}", "metric": metric}
            if rng.random() < 0.5:
                event["assignment_id"] = assignment_id
            else:
                event.update(experiment=key, unit_id=unit_id)
            fresh.append(event)
        events = fresh + resends
        rng.shuffle(events)
        body = orjson.dumps({"events": events})
        done = lambda a: self.ledger.reported(events, a)  # noqa: E731
        return "POST", "/v1/outcomes/batch", body, len(events), done

    def results(self):
        key = self.experiment()
        path = f"/v1/experiments/{key}/results"
        if self.rng.random() < 0.25:
            segment = "newcomers" if key == FIXED["key"] else "cohort-1"
            path += f"?metric=unsubscribed&segment={segment}"
        return "GET", path, None, 1, None

    def learnings(self):
        return "GET", self.rng.choice(LEARNING_QUERIES), None, 1, None

    def reweight(self):
        return "POST", f"/v1/experiments/{BANDIT['key']}/reweight", None, 1, None


# name, requests a second at LOAD 1, client threads, the Traffic method, what an item is
MIX = [
    ("assign", 120, 8, Traffic.assign, "units"),
    ("assign batch", 0.5, 2, Traffic.assign_batch, "units"),
    ("outcome batch", 0.5, 2, Traffic.outcome_batch, "events"),
    ("results", 1, 1, Traffic.results, ""),
    ("learnings", 2, 1, Traffic.learnings, ""),
    ("reweight", 0.1, 1, Traffic.reweight, ""),
]


def stream(base, token, make, rate, start, deadline, seed, tally) -> None:
    """Send make()'s requests at `rate` a second from `start` (random phase) until `deadline`."""
    rng = random.Random(seed)
    connection = Connection(base, token)
    interval = 1 / rate
    due = start + rng.random() * interval
    while due < deadline:
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        elif time.monotonic() >= deadline:  # fallen behind: what is still due is left unsent
            tally.behind = math.ceil((deadline - due) / interval)
            break
        method, path, body, items, done = make()
        try:
            status, payload = connection.send(method, path, body)
        except (OSError, http.client.HTTPException) as error:
            status, payload = None, repr(error).encode()
        tally.latencies.append(time.monotonic() - due)
        tally.requests += 1
        if status is not None and 200 <= status < 300:
            tally.items += items
            if done:
                done(orjson.loads(payload))
        else:
            tally.errors += 1
            tally.unavailable += status == 503
            if len(tally.first_errors) < 3:
                tally.first_errors.append(f"{method} {path} → {status}: {payload[:200]!r}")
        due += interval
    connection.close()


def run_mix(base: str, token: str, ledger: Ledger, seconds: float) -> tuple[dict, float]:
    tallies: dict[str, list[Tally]] = {}
    threads = []
    start = time.monotonic() + 0.5
    deadline = start + seconds
    seeds = itertools.count(1)
    for name, rate, count, method, _ in MIX:
        for _ in range(count):
            seed = next(seeds)
            traffic = Traffic(ledger, random.Random(seed), seed)
            tally = Tally()
            tallies.setdefault(name, []).append(tally)

            def make(traffic=traffic, method=method):
                return method(traffic)

            args = (base, token, make, rate * LOAD / count, start, deadline, seed, tally)
            threads.append(threading.Thread(target=stream, args=args))
    machine, client = machine_cpu(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    busy, cores = machine_cpu(since=machine, seconds=elapsed)
    print(
        f"  CPU while loading: the clients {(time.process_time() - client) / elapsed:.2f} of a "
        f"core; the machine {busy:.0%} busy of {cores} cores (server, database, clients and "
        "anything else running)"
    )
    merged = {}
    for name, parts in tallies.items():
        merged[name] = Tally()
        for part in parts:
            merged[name].add(part)
    return merged, elapsed


def machine_cpu(since=None, seconds: float = 0.0):
    """The machine's (busy, total) jiffies now, or its busy share and cores since `since`."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    busy, total = sum(fields) - fields[3] - fields[4], sum(fields)  # less idle and iowait
    if since is None:
        return busy, total
    cores = os.cpu_count() or 1
    return (busy - since[0]) / max(total - since[1], 1), cores


def seed(base: str, token: str, ledger: Ledger) -> None:
    """Two running experiments with units and outcomes, a reweight, and learnings to query."""
    rng = random.Random(0)
    traffic = Traffic(ledger, rng, 0)
    for spec in (FIXED, BANDIT):
        call("POST", f"{base}/v1/experiments", token, spec)
        call("POST", f"{base}/v1/experiments/{spec['key']}/start", token)
        for _ in range(SEED_UNITS // 1_000):
            units = [traffic.new_unit() for _ in range(1_000)]
            body = {"experiment": spec["key"], "units": units}
            answer = call("POST", f"{base}/v1/assignments/batch", token, body)
            ledger.assigned(spec["key"], answer["assignments"])
    for _ in range(2):
        _, _, body, _, done = traffic.outcome_batch()
        done(call("POST", f"{base}/v1/outcomes/batch", token, orjson.loads(body)))
    call("POST", f"{base}/v1/experiments/{BANDIT['key']}/reweight", token)
    for key in EXPERIMENTS:
        body = {"tags": ["q4-2026", "mixed-load"]}
        call("POST", f"{base}/v1/experiments/{key}/learnings", token, body)
    for summary, segment in MANUAL_LEARNINGS:
        body = {"summary": summary, "tags": ["research"]}
        if segment:
            body["segment"] = segment
        call("POST", f"{base}/v1/learnings", token, body)


def rows_found(base: str, token: str) -> list[int]:
    """Rows each learnings query answers (the evidence: experiments pooled)."""
    found = []
    for query in LEARNING_QUERIES:
        answer = call("GET", f"{base}{query}", token)
        found.append(len(answer["experiments"] if isinstance(answer, dict) else answer))
    return found


def stored(database_url: str) -> dict[str, int]:
    """Rows of the tables that count what was acknowledged, read straight from the database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("assignment", "outcome", "learning")
            }
    finally:
        engine.dispose()


def stats_checks(env: dict, keys: list[str]) -> list[tuple[bool, str]]:
    """`kairos stats check` of each experiment, at once (each is mostly its own process)."""
    checks = [
        subprocess.Popen(
            [str(BIN / "kairos"), "stats", "check", key],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key in keys
    ]
    answers = []
    for check in checks:
        out, err = check.communicate()
        answers.append((check.returncode == 0, out.strip() or err.strip()))
    return answers


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


WIDTHS = (15, 9, 9, 13, 10, 12, 5, 8, 9, 9, 9)


def table(tallies: dict, elapsed: float) -> list[str]:
    cells = ("", "target/s", "sent/s", "items/s", "requests", "errors", "503", "unsent")
    header = (*cells, "p50 ms", "p99 ms", "max ms")
    lines = [fmt(header, WIDTHS)]
    total = Tally()
    for label, rate, _, _, unit in MIX:
        tally = tallies[label]
        total.add(tally)
        items = f"{tally.items / elapsed:,.0f} {unit}" if unit else ""
        lines.append(fmt(row_of(label, rate * LOAD, tally, elapsed, items), WIDTHS))
    target = sum(rate for _, rate, *_ in MIX) * LOAD
    lines.append(fmt(row_of("total", target, total, elapsed, ""), WIDTHS))
    return lines


def row_of(label: str, target: float, tally: Tally, elapsed: float, items: str) -> tuple:
    ordered = sorted(tally.latencies)
    return (
        label,
        f"{target:g}",
        f"{tally.requests / elapsed:,.1f}",
        items,
        f"{tally.requests:,}",
        f"{tally.errors} ({tally.errors / max(tally.requests, 1):.1%})",
        tally.unavailable,
        f"{tally.behind:,}",
        f"{percentile(ordered, 0.50) * 1e3:.1f}",
        f"{percentile(ordered, 0.99) * 1e3:.1f}",
        f"{(ordered[-1] if ordered else float('nan')) * 1e3:.0f}",
    )


def fmt(cells, widths) -> str:
    return "".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def measure(name: str, database_url: str | None) -> dict:
    """Seed, load for SECONDS, then compare what is stored with what was acknowledged."""
    ledger = Ledger()
    print(f"\n{name}")
    began = time.monotonic()
    with kairos_server(database_url) as (base, token, env):
        seed(base, token, ledger)
        seeded = (len(ledger.assignment_ids), len(ledger.event_ids))
        print(f"  server up and seeded in {time.monotonic() - began:.1f} s")
        print(f"  rows each learnings query finds: {rows_found(base, token)}")
        tallies, finished = run_mix(base, token, ledger, SECONDS)
        began = time.monotonic()
        counts = stored(env["KAIROS_DATABASE_URL"])
        checks = stats_checks(env, EXPERIMENTS)
        print(f"  counted and checked in {time.monotonic() - began:.1f} s")
    elapsed = SECONDS  # rates are over the sending window; the last answers come after it
    print(f"  sent for {SECONDS:g} s, last answer {finished:.1f} s after the start")
    for line in table(tallies, elapsed):
        print(line)
    errors = sum(t.errors for t in tallies.values())
    behind = sum(t.behind for t in tallies.values())
    if behind:
        due = behind + sum(t.requests for t in tallies.values())
        print(
            f"  {behind:,} requests ({behind / due:.1%}) were due but not sent when the time was "
            "up: the server (or the clients) were behind then"
        )
    for tally in tallies.values():
        for line in tally.first_errors:
            print(f"  error: {line}")
    assignments, events = len(ledger.assignment_ids), len(ledger.event_ids)
    exact = (
        counts["assignment"] == assignments
        and counts["outcome"] == events == ledger.accepted
        and counts["learning"] > 0
    )
    print(
        f"assignments stored {counts['assignment']:,} = distinct acknowledged {assignments:,} "
        f"({seeded[0]:,} seeded); outcome rows stored {counts['outcome']:,} = distinct events "
        f"acknowledged {events:,} = accepted {ledger.accepted:,} ({seeded[1]:,} seeded; "
        f"{ledger.duplicates:,} resends answered as duplicates); {counts['learning']} "
        f"learnings to query: {'exact' if exact else 'NOT EXACT'}"
    )
    for _, message in checks:
        print(f"statistics vs rebuild from raw rows (kairos stats check): {message}")
    met = errors == 0 and exact and all(ok for ok, _ in checks)
    return {"tallies": tallies, "elapsed": elapsed, "met": met}


def migrated_postgres():
    """A throwaway PostgreSQL cluster with Kairos' schema; (cluster, URL)."""
    from tests.pg import PostgresCluster

    cluster = PostgresCluster()
    url = cluster.start()
    env = {**os.environ, "KAIROS_DATABASE_URL": url}
    subprocess.run([str(BIN / "kairos"), "db", "upgrade"], env=env, check=True, capture_output=True)
    return cluster, url


def main() -> bool:
    clients = sum(count for _, _, count, *_ in MIX)
    print(
        f"Open loop at fixed arrival rates (load ×{LOAD:g}), {SECONDS:g} s a database; "
        f"{clients} client threads (Python, http.client keep-alive) in this process, on the same "
        f"2 cores as the server ({SERVER}); latency from when each request was due"
    )
    results = {}
    if "sqlite" in DATABASES:
        results["SQLite"] = measure("SQLite", None)
    if "postgresql" in DATABASES:
        cluster, url = migrated_postgres()
        try:
            results["PostgreSQL"] = measure("PostgreSQL 15", url)
        finally:
            cluster.stop()
    print("\nside by side: req/s, p99 ms, errors")
    widths = (15, *[28] * len(results))
    print(fmt(("", *results), widths))
    for label, *_ in [*MIX, ("total",)]:
        cells = []
        for result in results.values():
            tallies = result["tallies"]
            tally = tallies.get(label)
            if tally is None:
                tally = Tally()
                for part in tallies.values():
                    tally.add(part)
            ordered = sorted(tally.latencies)
            cells.append(
                f"{tally.requests / result['elapsed']:,.1f}  "
                f"{percentile(ordered, 0.99) * 1e3:,.1f}  {tally.errors}"
            )
        print(fmt((label, *cells), widths))
    return all(result["met"] for result in results.values())
