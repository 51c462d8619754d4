"""`kairos stats`: check an experiment's maintained statistics against a recount of its raw
rows, or rebuild them from those rows."""

import click

from api.cli.database import with_database
from experiments.storage.database import Database


@click.group()
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
