"""The readiness check against a database that hangs: it answers "not ready" in its bound, on
one thread however many probes arrive, and "ready" again when the database comes back."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from experiments import health
from experiments.storage import migrate
from experiments.storage.database import Database
from tests.pg import PostgresCluster

pytestmark = pytest.mark.postgres


def cluster_processes(cluster: PostgresCluster) -> list[int]:
    """The postmaster and every process it started (backends, writers, …)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    found, frontier = [postmaster], [postmaster]
    while frontier:
        parent = frontier.pop()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry))
                    frontier.append(int(entry))
    return found


def test_a_hung_database_is_not_ready_within_the_bound_and_ready_again_after():
    cluster = PostgresCluster()
    database = Database(cluster.start())
    try:
        migrate.upgrade(database)
        assert health.check(database)["status"] == "ok"
        frozen = cluster_processes(cluster)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            reports, started = [], time.monotonic()
            probes = [
                threading.Thread(target=lambda: reports.append(health.check(database, 1.0)))
                for _ in range(20)
            ]
            for probe in probes:
                probe.start()
            for probe in probes:
                probe.join(timeout=10)
            took = time.monotonic() - started
            assert len(reports) == 20 and took < 3, took
            assert {r["status"] for r in reports} == {"degraded"}
            assert reports[0]["schema"] == "unreachable: no answer within 1 s"
            waiting = [t for t in threading.enumerate() if t.name == "kairos-health"]
            assert len(waiting) == 1  # one look waits on the database, not one per probe
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while health.check(database)["status"] != "ok":
            assert time.monotonic() < deadline, health.check(database)
            time.sleep(0.2)
    finally:
        database.dispose()
        cluster.stop()
