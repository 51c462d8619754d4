"""Run the app under gunicorn from Python, for `kairos serve`."""

import glob
import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from sqlalchemy.engine import URL

from api.logs import JsonFormatter, without_secrets
from experiments.telemetry import MULTIPROCESS_DIR, forget_process


class KairosServer(BaseApplication):
    def __init__(self, options: dict, analysis_worker: bool = False):
        self.options = options
        self.analysis_worker = analysis_worker
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from api import create_app

        app = create_app()
        collect_as_served()
        if self.analysis_worker:
            start_analysis_thread(app)
        return app


def collect_as_served() -> None:
    """The garbage collector as a server process runs it, once the app is loaded.

    The app's long-lived objects (SQLAlchemy metadata, schemas, routes) are moved out of the
    collector's sight, and young collections run every 20,000 allocations instead of 700:
    full collections over them were a visible share of the p99 latency.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)


def start_analysis_thread(app) -> None:
    """An analysis worker thread in this gunicorn worker; of all the server's processes, the
    one holding the database's lock file runs jobs (see run_exclusively)."""
    import threading

    from api.db import get_database
    from experiments.analysis_jobs import Worker, run_exclusively

    with app.app_context():
        database = get_database()
    os.makedirs(app.instance_path, exist_ok=True)
    lock = analysis_lock_path(app.instance_path, database.url)
    worker = Worker(database, poll_seconds=float(os.environ.get("KAIROS_ANALYSIS_POLL", 5)))
    thread = threading.Thread(
        target=run_exclusively, args=(worker, lock), name="analysis-worker", daemon=True
    )
    thread.start()


def analysis_lock_path(instance_path: str, database_url: URL) -> str:
    """The lock file that lets one process run a database's analyses: one per database, so
    that a second server on another database (a test's, next to `make run`) runs its own.
    A SQLite file's lock sits beside it; any other database's in the instance folder."""
    if database_url.get_backend_name() == "sqlite" and database_url.database not in (
        None,
        "",
        ":memory:",
    ):
        return f"{database_url.database}.analysis-worker.lock"
    digest = hashlib.sha256(database_url.render_as_string().encode()).hexdigest()[:16]
    return os.path.join(instance_path, f"analysis-worker-{digest}.lock")


def port_in_use(host: str, port: int) -> bool:
    """Whether another program listens on host:port. With SO_REUSEPORT, gunicorn would not
    notice by itself: a second server on the same port would quietly share its traffic."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def run_gunicorn(
    *, bind: str, workers: int, threads: int, json_logs: bool, analysis_worker: bool = False
) -> None:
    options = {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        # Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads connections
        # over the workers. On one shared socket, one gthread worker tends to accept every
        # keep-alive connection of a burst and serves them alone, on one core.
        "reuse_port": True,
        "timeout": 120,
        "graceful_timeout": 30,
        "errorlog": "-",
        "loglevel": "info",
        # Kairos uses no gunicorn control socket; its default path (~/.gunicorn/gunicorn.ctl)
        # would be shared by every server the same user runs.
        "control_socket_disable": True,
        # A worker gone (restarted, killed): its live gauges leave the metrics, its counts stay.
        "child_exit": lambda _arbiter, worker: forget_process(worker.pid),
        # No gunicorn access log: Kairos writes its own request lines (api/request_telemetry.py),
        # with the route rather than the path and query (which may carry a token).
    }
    options["logger_class"] = JsonGunicornLogger if json_logs else GunicornLogger
    with metrics_directory():
        KairosServer(options, analysis_worker=analysis_worker).run()


class GunicornLogger(glogging.Logger):
    """gunicorn's own lines, without what a request carried: gunicorn quotes a request line
    it refuses ("Invalid HTTP request line: 'GET /…?token=… HTTP/1.1'"), query and all."""

    def setup(self, cfg):
        super().setup(cfg)
        self.error_log.addFilter(without_secrets)


class JsonGunicornLogger(GunicornLogger):
    """gunicorn's own lines (workers booting, timeouts, errors) as JSON lines too."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())


@contextmanager
def metrics_directory() -> Iterator[str]:
    """Where the workers keep their metrics (PROMETHEUS_MULTIPROC_DIR), so that a scrape of
    any worker sums them all: the operator's folder, emptied of a previous run's files, or
    else a private temporary one, removed when the server stops."""
    given = os.environ.get(MULTIPROCESS_DIR)
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)
        yield given
        return
    folder = tempfile.mkdtemp(prefix="kairos-metrics-")
    os.environ[MULTIPROCESS_DIR] = folder
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROCESS_DIR, None)
        shutil.rmtree(folder, ignore_errors=True)
