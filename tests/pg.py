"""A throwaway PostgreSQL cluster for the test suite: temp data dir, loopback port.

The server refuses to run as root, so when the tests run as root the cluster is initialised
and started as the `postgres` user. Set KAIROS_TEST_POSTGRES_URL to use a server of your own.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version_of)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH). "
        "Install them (Debian: apt-get install postgresql) or set KAIROS_TEST_POSTGRES_URL."
    )


def _version_of(path: str) -> int:
    try:
        return int(path.split("/")[4])
    except (IndexError, ValueError):
        return 0


# The test suite's server: fast, not durable (an acknowledged commit may be lost in a crash).
TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresCluster:
    def __init__(self, settings: dict[str, str] | None = None):
        """`settings`: the server's settings (`-c name=value`); the test suite's by default."""
        self.settings = dict(TEST_SETTINGS if settings is None else settings)
        self.bin = postgres_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="kairos-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.user = "kairos"
        self.run_as = None
        if os.geteuid() == 0:
            self.run_as = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.socket_dir.mkdir()
        if self.run_as:
            os.chown(self.socket_dir, pwd.getpwnam("postgres").pw_uid, -1)

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def start(self) -> str:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        return self.resume()

    def resume(self) -> str:
        """Start the server on its data directory (again, after `halt`); its URL."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.socket_dir} " + " ".join(
            f"-c {name}={value}" for name, value in self.settings.items()
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        url = f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return url
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not open port {self.port}; see {self.root}/server.log")

    def halt(self) -> None:
        """Stop the server at once, as a crash would, keeping its data for `resume`."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
