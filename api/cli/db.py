"""`kairos db`: migrate the schema up or down, and show where it stands."""

import click

from api.cli.database import with_database
from experiments.storage import migrate
from experiments.storage.database import Database


@click.group()
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
    state, current, head = migrate.schema_state(database)
    said = {
        "current": "up to date",
        "behind": f"newest is {head}: run 'kairos db upgrade'",
        "ahead": f"newer than this release, which knows up to {head}",
    }[state]
    click.echo(f"{current or 'empty'} ({said})")
