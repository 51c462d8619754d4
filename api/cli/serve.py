"""`kairos serve` and `kairos worker`: the two processes a deployment runs, the HTTP API (with
gunicorn) and the PyMC analysis jobs."""

import os
import sys

import click

from api.cli.database import SCHEMA_BEHIND, with_database
from experiments import keys as api_keys
from experiments.storage import migrate
from experiments.storage.database import Database


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn processes.")
@click.option("--threads", default=4, show_default=True, type=int, help="Threads per process.")
@click.option(
    "--access-log/--no-access-log",
    default=None,
    help="A log line per request (method, route, status, duration, request id). "
    "Default: on with --log-format json, else off.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as text or as JSON objects. Default: KAIROS_LOG_FORMAT, else text.",
)
@click.option(
    "--analysis-worker/--no-analysis-worker",
    default=None,
    help="Run PyMC analyses in a thread of the server. Default: on with the embedded SQLite "
    "database; with PostgreSQL run 'kairos worker' instead.",
)
@with_database(schema_required=False)
def serve(
    database: Database,
    host: str,
    port: int,
    workers: int,
    threads: int,
    access_log: bool | None,
    log_format: str | None,
    analysis_worker: bool | None,
):
    """Serve the API with gunicorn (migrating the embedded SQLite database first)."""
    from api.server import port_in_use, run_gunicorn
    from api.settings import log_format_of

    # The workers read these from the environment (api/settings.py), as a deployment's would.
    if log_format is not None:
        os.environ["KAIROS_LOG_FORMAT"] = log_format
    if access_log is not None:
        os.environ["KAIROS_ACCESS_LOG"] = "1" if access_log else "0"

    if port_in_use(host, port):
        raise click.ClickException(f"{host}:{port} is already in use; choose another --port.")
    if database.dialect == "sqlite":
        migrate.upgrade(database)
    elif not migrate.is_usable(database):
        raise click.ClickException(SCHEMA_BEHIND)
    print_bootstrap_token(database)
    database.dispose()  # the workers open their own connections after the fork

    if analysis_worker is None:
        analysis_worker = database.dialect == "sqlite"
    click.echo(f"Kairos serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if analysis_worker:
        click.echo("PyMC analyses run in a thread of this server (--no-analysis-worker: off).")
    sys.stdout.flush()
    run_gunicorn(
        bind=f"{host}:{port}",
        workers=workers,
        threads=threads,
        json_logs=log_format_of() == "json",
        analysis_worker=analysis_worker,
    )


@click.command()
@click.option("--once", is_flag=True, help="Run the waiting jobs, then exit.")
@click.option("--poll", default=1.0, show_default=True, type=float, help="Seconds between polls.")
@with_database
def worker(database: Database, once: bool, poll: float):
    """Run PyMC analysis jobs (hierarchical, factorial) as they are queued.

    Any number of workers may run, on any host sharing the database: each job is claimed by
    one. Stop with Ctrl-C or SIGTERM; a job cut short is taken up again by another worker
    five minutes after its last heartbeat (KAIROS_ANALYSIS_STALE_SECONDS).
    """
    import signal

    from experiments.analysis_jobs import Worker

    runner = Worker(database, poll_seconds=poll)
    if once:
        done = 0
        while (status := runner.run_once()) is not None:
            done += 1
            click.echo(f"analysis finished: {status}")
        click.echo(f"{done} analysis job(s) run.")
        return
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    click.echo(f"Analysis worker {runner.name} waiting for jobs (Ctrl-C to stop)…")
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        runner.stop()


def print_bootstrap_token(database: Database) -> None:
    """On a database with no key at all, create an admin key and print its token once."""
    with database.session(write=True) as session:
        if api_keys.has_any_key(session=session):
            return
        _, token = api_keys.create_key(session=session, name="admin", scopes=["admin"])
    click.echo(
        "No API key existed, so an admin key was created. Its token is shown only this once;\n"
        "store it, then create narrower keys with 'kairos keys create NAME --scopes …':\n"
        f"\n    {token}\n"
    )
