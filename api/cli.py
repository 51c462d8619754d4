"""The `kairos` command line: serve, migrate, manage API keys, check statistics."""

import functools
import sys

import click

from experiments import keys as api_keys
from experiments.errors import KairosError
from experiments.storage import migrate
from experiments.storage.database import Database


def with_database(command=None, *, schema_required: bool = True):
    """Run the command against the configured database (KAIROS_DATABASE_URL or the default).

    A command that reads or writes Kairos' tables refuses, with the command that fixes it, a
    database whose schema is missing or behind (instead of an SQL traceback)."""
    if command is None:
        return functools.partial(with_database, schema_required=schema_required)

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from api import create_app
        from api.db import get_database

        app = create_app()
        with app.app_context():
            database = get_database()
            try:
                if schema_required and not migrate.is_up_to_date(database):
                    raise click.ClickException(
                        "The database schema is not up to date: run 'kairos db upgrade' first."
                    )
                return command(database, *args, **kwargs)
            except KairosError as error:
                raise click.ClickException(error.message) from error
            finally:
                database.dispose()

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kairos", prog_name="kairos")
def main():
    """Kairos: decide the timing, tone and channel of lifecycle messages.

    \b
    Start here:
      kairos serve                          set up the database and serve on 127.0.0.1:8000
      kairos keys create NAME --scopes read create an API key (the token is the last line)
      kairos simulate                       drive a running Kairos with synthetic users
      kairos learnings search --verdict win what the registry has learned
      kairos worker                         run PyMC analysis jobs (PostgreSQL deployments)

    The database is KAIROS_DATABASE_URL (default: a SQLite file in the instance folder).
    """


# --- database -------------------------------------------------------------------------------


@main.group()
def db():
    """Database schema migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
@with_database(schema_required=False)
def db_upgrade(database: Database, revision: str):
    """Migrate the schema up to REVISION (default: the newest)."""
    before = migrate.current_revision(database)
    migrate.upgrade(database, revision)
    after = migrate.current_revision(database)
    where = database.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"Database {where} is already at {after}.")
    else:
        click.echo(f"Database {where} migrated from {before or 'empty'} to {after}.")


@db.command("downgrade")
@click.argument("revision")
@with_database(schema_required=False)
def db_downgrade(database: Database, revision: str):
    """Migrate the schema down to REVISION ('base' empties it)."""
    migrate.downgrade(database, revision)
    click.echo(f"Database now at {migrate.current_revision(database) or 'base'}.")


@db.command("current")
@with_database(schema_required=False)
def db_current(database: Database):
    """Show the schema revision, and whether it is the newest."""
    current, head = migrate.current_revision(database), migrate.head_revision(database)
    state = "up to date" if current == head else f"newest is {head}: run 'kairos db upgrade'"
    click.echo(f"{current or 'empty'} ({state})")


# --- API keys -------------------------------------------------------------------------------


@main.group()
def keys():
    """API keys: create, list, revoke."""


@keys.command("create")
@click.argument("name")
@click.option(
    "--scopes",
    required=True,
    help=f"Comma-separated, from: {', '.join(api_keys.SCOPES)}. "
    "admin grants everything; manage also grants read.",
)
@with_database
def keys_create(database: Database, name: str, scopes: str):
    """Create a key named NAME; print its token alone on the last line."""
    with database.session(write=True) as session:
        key, token = api_keys.create_key(
            session=session, name=name, scopes=api_keys.parse_scopes(scopes)
        )
        click.echo(f"Created key {key.id} '{key.name}' with scopes {key.scopes}.", err=True)
        click.echo("The token is shown only now; store it safely:", err=True)
    click.echo(token)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@with_database
def keys_list(database: Database, include_revoked: bool):
    """List keys (never their tokens)."""
    with database.session() as session:
        rows = api_keys.list_keys(session=session, include_revoked=include_revoked)
    if not rows:
        click.echo("No keys. Create one with: kairos keys create NAME --scopes admin")
        return
    click.echo(
        f"{'id':>4}  {'name':<24} {'scopes':<26} {'token':<16} {'created (UTC)':<19}  revoked"
    )
    for key in rows:
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else ""
        click.echo(
            f"{key.id:>4}  {key.name:<24} {key.scopes:<26} {key.prefix + '…':<16} "
            f"{key.created_at:%Y-%m-%d %H:%M:%S}  {revoked}"
        )


@keys.command("revoke")
@click.argument("name_or_id")
@with_database
def keys_revoke(database: Database, name_or_id: str):
    """Revoke the key with this id, or every active key with this name."""
    with database.session(write=True) as session:
        revoked = api_keys.revoke_keys(session=session, name_or_id=name_or_id)
    for key in revoked:
        click.echo(f"Revoked key {key.id} '{key.name}'.")


# --- statistics -----------------------------------------------------------------------------


@main.group()
def stats():
    """Sufficient statistics: check them against, or rebuild them from, the raw rows."""


@stats.command("check")
@click.argument("experiment")
@with_database
def stats_check(database: Database, experiment: str):
    """Compare EXPERIMENT's maintained statistics with a recount of its raw rows."""
    from experiments.statistics import audit as statistics
    from experiments.storage.repository import get_experiment

    with database.session() as session:
        found = statistics.differences(session, get_experiment(session=session, key=experiment))
    if found:
        for line in found[:50]:
            click.echo(line)
        raise click.ClickException(
            f"{len(found)} difference(s); 'kairos stats rebuild {experiment}' repairs them."
        )
    click.echo(f"{experiment}: statistics agree with the raw rows.")


@stats.command("rebuild")
@click.argument("experiment")
@with_database
def stats_rebuild(database: Database, experiment: str):
    """Recompute EXPERIMENT's statistics from its assignments and outcomes."""
    from experiments.statistics import audit as statistics
    from experiments.storage.repository import get_experiment

    with database.session(write=True) as session:
        arms = statistics.rebuild(session, get_experiment(session=session, key=experiment))
        session.commit()
    click.echo(f"{experiment}: rebuilt {arms} arm statistics from the raw rows.")


# --- learnings ------------------------------------------------------------------------------


def _learning_filters(function):
    """The registry's filters, shared by `search` and `export`."""
    options = [
        click.option("--segment"),
        click.option("--metric"),
        click.option("--factor", help="timing, tone, channel… or 'variant'"),
        click.option("--level"),
        click.option("--channel"),
        click.option("--experiment", help="An experiment's key."),
        click.option("--verdict", type=click.Choice(["win", "loss", "flat", "inconclusive"])),
        click.option("--tag", "tags", multiple=True, help="Repeat for several (all must match)."),
        click.option("--since", type=click.DateTime(), help="Published on or after (UTC)."),
        click.option("--until", type=click.DateTime(), help="Published on or before (UTC)."),
        click.option("-q", "--query", "q", help="Text search over summary, hypothesis, notes."),
        click.option(
            "--sort",
            type=click.Choice(["date", "-date", "lift", "-lift"]),
            default="-date",
            show_default=True,
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _search(database: Database, limit: int, sort: str, **given):
    from datetime import UTC

    from experiments.learnings.record import as_record
    from experiments.learnings.search import Filters, search

    for name in ("since", "until"):
        if given[name] is not None:
            given[name] = given[name].replace(tzinfo=UTC)
    given["tags"] = tuple(given["tags"])
    with database.session() as session:
        items, total = search(session=session, filters=Filters(**given), sort=sort, limit=limit)
        return [as_record(x) for x in items], total


@main.group("learnings")
def learnings_group():
    """The learnings registry: what worked, for whom, and how sure we are."""


@learnings_group.command("search")
@_learning_filters
@click.option("--limit", default=30, show_default=True, type=click.IntRange(1, 10_000))
@with_database
def learnings_search(database: Database, limit: int, sort: str, **given):
    """Find learnings and print them as a table.

    \b
    Examples:
      kairos learnings search --segment newcomers --metric activated --verdict win
      kairos learnings search --factor channel --level push --sort -lift
      kairos learnings search -q "morning commute"
    """
    records, total = _search(database, limit, sort, **given)
    if not records:
        click.echo("No learning matches.")
        return
    widths = (5, 20, 12, 12, 26, 9, 24, 6, 8)
    header = (
        "id",
        "experiment",
        "segment",
        "metric",
        "factor=level",
        "lift",
        "95% interval",
        "P",
        "verdict",
    )
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in records:
        lift = "" if r["lift_mean"] is None else f"{r['lift_mean']:+.1%}"
        interval = "" if r["lift_low"] is None else f"{r['lift_low']:+.1%} to {r['lift_high']:+.1%}"
        prob = "" if r["prob_better"] is None else f"{r['prob_better']:.2f}"
        level = f"{r['factor']}={r['level']}" if r["factor"] else ""
        cells = (
            str(r["id"]),
            r["experiment_key"] or "(manual)",
            r["segment"] or "",
            r["metric"] or "",
            level,
            lift,
            interval,
            prob,
            r["verdict"],
        )
        click.echo("  ".join(str(c)[:w].ljust(w) for c, w in zip(cells, widths, strict=True)))
    for r in records[:5]:
        click.echo(f"\n  #{r['id']}: {r['summary']}")
    if total > len(records):
        click.echo(f"\n{len(records)} of {total} shown; --limit shows more.")


@learnings_group.command("export")
@_learning_filters
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Default: stdout."
)
@click.option("--limit", default=100_000, show_default=True, type=click.IntRange(1))
@with_database
def learnings_export(
    database: Database, fmt: str, output: str | None, limit: int, sort: str, **given
):
    """Export learnings (every one, or those the filters pick) as CSV or JSON."""
    import csv
    import io
    import json

    from experiments.learnings.record import EXPORT_FIELDS

    records, _ = _search(database, limit, sort, **given)
    if fmt == "json":
        data = json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        for record in records:
            writer.writerow(
                {
                    **record,
                    "tags": ";".join(record["tags"] or []),
                    "links": ";".join(record["links"] or []),
                }
            )
        data = out.getvalue()
    if output:
        with open(output, "w", encoding="utf-8", newline="") as handle:
            handle.write(data)
        click.echo(f"{len(records)} learning(s) written to {output}.", err=True)
    else:
        click.echo(data, nl=False)


# --- simulation -----------------------------------------------------------------------------


@main.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="A running Kairos.")
@click.option(
    "--token",
    envvar="KAIROS_TOKEN",
    required=True,
    help="An admin key's token (the simulated clock needs one); or set KAIROS_TOKEN.",
)
@click.option("--experiment", default="simulated-onboarding", show_default=True)
@click.option("--hours", default=48, show_default=True, type=click.IntRange(1, 24 * 60))
@click.option("--users-per-hour", default=400, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--seed",
    default=1,
    show_default=True,
    type=int,
    help="Fixes how the users behave; every run still brings new users.",
)
def simulate(url: str, token: str, experiment: str, hours: int, users_per_hour: int, seed: int):
    """Drive a running Kairos with synthetic users and report what the bandit learned.

    Users of three segments arrive every simulated hour; the simulator knows how each segment
    truly responds to timing, tone and channel, asks Kairos which message to send, reports
    activations (hours later) and suppressed sends, and finally compares the bandit with an
    oracle and with a uniform split.

    Run it again to continue the experiment: new users, on a simulated clock that starts after
    the experiment's.
    """
    from api.simulator import Api, SimulationError
    from api.simulator import simulate as run

    if not token.isascii() or not token.isprintable() or " " in token:
        # An HTTP header cannot carry it (urllib would fail with a traceback): most likely
        # the README's placeholder, pasted as is.
        raise click.BadParameter(
            f"{token!r} is not a token; pass the one 'kairos serve' printed (kairos_ and 43 "
            "letters, digits, - or _).",
            param_hint="--token / KAIROS_TOKEN",
        )
    click.echo(
        f"Simulating {hours} h × {users_per_hour:,} users against {url} "
        f"(experiment '{experiment}', seed {seed})…"
    )
    try:
        run(
            Api(url, token),
            key=experiment,
            hours=hours,
            users_per_hour=users_per_hour,
            seed=seed,
            echo=click.echo,
        )
    except SimulationError as error:
        raise click.ClickException(str(error)) from error


# --- serving --------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn processes.")
@click.option("--threads", default=4, show_default=True, type=int, help="Threads per process.")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
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
    access_log: bool,
    analysis_worker: bool | None,
):
    """Serve the API with gunicorn (migrating the embedded SQLite database first)."""
    from api.server import port_in_use, run_gunicorn

    if port_in_use(host, port):
        raise click.ClickException(f"{host}:{port} is already in use; choose another --port.")
    if database.dialect == "sqlite":
        migrate.upgrade(database)
    elif not migrate.is_up_to_date(database):
        raise click.ClickException(
            "The database schema is not up to date: run 'kairos db upgrade' first."
        )
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
        access_log=access_log,
        analysis_worker=analysis_worker,
    )


@main.command()
@click.option("--once", is_flag=True, help="Run the waiting jobs, then exit.")
@click.option("--poll", default=1.0, show_default=True, type=float, help="Seconds between polls.")
@with_database
def worker(database: Database, once: bool, poll: float):
    """Run PyMC analysis jobs (hierarchical, factorial) as they are queued.

    Any number of workers may run, on any host sharing the database: each job is claimed by
    one. Stop with Ctrl-C or SIGTERM; a job cut short is taken up again by another worker
    five minutes after its last heartbeat.
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
