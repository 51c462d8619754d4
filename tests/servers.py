"""Kairos's own processes for end-to-end tests: `kairos serve` (gunicorn), `kairos worker` and
one-shot commands, started as a deployment runs them, each in a process group of its own (so
that SIGKILL reaches a server's master and workers together, as a machine losing power would).
Their output goes to a log file: a pipe left unread would fill up and stall the process."""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.pg import free_port

KAIROS = Path(sys.executable).with_name("kairos")


def kairos_env(database_url: str, **extra_env: str) -> dict[str, str]:
    """The environment of a Kairos process on `database_url`."""
    return {
        **os.environ,
        "KAIROS_DATABASE_URL": database_url,
        "KAIROS_SECRET_KEY": "tests",
        **extra_env,
    }


@dataclass
class Served:
    """A running `kairos serve`: its base URL, process (the gunicorn master), environment and
    log file."""

    base: str
    process: subprocess.Popen
    env: dict[str, str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def admin_token(self) -> str | None:
        """The one-time admin token the server printed, if it printed one."""
        found = re.findall(r"^\s+(kairos_\S+)\s*$", self.output(), re.M)
        return found[-1] if found else None

    def kill(self) -> None:
        """SIGKILL to master and workers at once."""
        kill_minus_nine(self.process)


@contextmanager
def kairos_serve(database_url: str, log: Path, *, workers: int = 2, args=(), **extra_env: str):
    """`kairos serve` on `database_url` (2 gunicorn workers unless told), answering /health
    when this yields a `Served`; stopped (SIGTERM) at the end unless it died already. The log
    is appended to, so that a server restarted on the same log keeps the first one's output."""
    with kairos_nodes(database_url, [log], workers=workers, args=args, **extra_env) as (served,):
        yield served


@contextmanager
def kairos_nodes(
    database_url: str, logs: list[Path], *, workers: int = 2, args=(), **extra_env: str
):
    """One `kairos serve` per log file, all on `database_url` (app nodes, as on several
    hosts), started together; yields their `Served` once each answers /health."""
    env = kairos_env(database_url, **extra_env)
    nodes = []
    try:
        for log in logs:
            port = free_port()
            with log.open("a") as output:
                process = subprocess.Popen(
                    [str(KAIROS), "serve", "--port", str(port), "--workers", str(workers), *args],
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            nodes.append(Served(f"http://127.0.0.1:{port}", process, env, log))
        deadline = time.monotonic() + 90
        for served in nodes:
            wait_until_healthy(served, deadline)
        yield nodes
    finally:
        for served in nodes:
            stop(served.process)


def wait_until_healthy(served: Served, deadline: float) -> None:
    wait_for_health(served.base, deadline, served.output, alive=served.process)


def wait_for_health(
    base: str, deadline: float, output: Callable[[], str], alive: subprocess.Popen | None = None
) -> None:
    """Until `base`/health answers 200 (`alive`, if given, must not have exited); `output`
    says what the server printed, for the failure's message."""
    while True:
        assert alive is None or alive.poll() is None, output()
        assert time.monotonic() < deadline, f"no answer from {base}/health:\n{output()}"
        try:
            if requests.get(f"{base}/health", timeout=1).status_code == 200:
                return
        # Refused until the server listens, unanswered while its workers still boot (over a
        # second on a busy machine on its first run): both mean "not yet".
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.1)


def start_worker(database_url: str, log: Path, **extra_env: str) -> subprocess.Popen:
    """`kairos worker` (polling every 0.2 s) in a process group of its own; stop it with
    `stop` or `kill_minus_nine`."""
    with log.open("a") as output:
        return subprocess.Popen(
            [str(KAIROS), "worker", "--poll", "0.2"],
            env=kairos_env(database_url, **extra_env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_kairos(database_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """A one-shot `kairos` command (`stats check`, `db upgrade`…), its output captured."""
    return subprocess.run(
        [str(KAIROS), *args],
        env=kairos_env(database_url),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_minus_nine(process: subprocess.Popen) -> None:
    """SIGKILL to the process's whole group (it was started in a session of its own)."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group, unless it is gone already; waits for the end."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
