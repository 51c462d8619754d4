"""The database a command runs against: `with_database` opens it, behind a schema check.

Every command that reads or writes Kairos' tables is wrapped in `with_database`; the commands
that migrate the schema (or serve, which migrates SQLite itself) skip the check.
"""

import functools

import click
from sqlalchemy.exc import OperationalError

from experiments.errors import KairosError
from experiments.storage import migrate

SCHEMA_BEHIND = "The database schema is not up to date: run 'kairos db upgrade' first."


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
                if schema_required and not migrate.is_usable(database):
                    raise click.ClickException(SCHEMA_BEHIND)
                return command(database, *args, **kwargs)
            except KairosError as error:
                raise click.ClickException(error.message) from error
            except OperationalError as error:
                raise click.ClickException(unreachable(database, error)) from error
            finally:
                database.dispose()

    return wrapper


def unreachable(database, error: OperationalError) -> str:
    """What an operator needs when the database does not answer: where, and the driver's reason
    (its first line; never the password)."""
    where = database.engine.url.render_as_string(hide_password=True)
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    return f"Cannot reach the database {where}: {reason}"
