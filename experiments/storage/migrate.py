"""Schema migrations (Alembic), driven from Python so `kairos db upgrade` needs no alembic.ini."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from experiments.storage.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# The full-text index of learnings (SQLite: an FTS5 table and its shadow tables; PostgreSQL: a
# GIN index on an expression): created by migration 0009 in raw DDL, not by the tables of
# experiments/storage/tables.py, so comparisons with those tables leave it out.
FTS_PREFIX = "learning_fts"


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ in ("table", "index") and name and name.startswith(FTS_PREFIX))


def alembic_config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option(
        "sqlalchemy.url", database.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema up to `revision` (default: the newest)."""
    config = alembic_config(database)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(database: Database, revision: str) -> None:
    config = alembic_config(database)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(database: Database) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database)).get_current_head()


def is_up_to_date(database: Database) -> bool:
    return current_revision(database) == head_revision(database)


def schema_state(database: Database) -> tuple[str, str | None, str | None]:
    """('current' | 'behind' | 'ahead', the database's revision, this release's newest).

    'ahead': the database is at a revision this release does not know, so a newer release
    migrated it (a rolling upgrade: `kairos db upgrade` from the new release, then the nodes
    one by one). Kairos' migrations add and never take away what an older node reads, so an
    older node keeps serving until it is replaced."""
    current, head = current_revision(database), head_revision(database)
    if current == head:
        return "current", current, head
    if current is None:
        return "behind", current, head
    try:
        ScriptDirectory.from_config(alembic_config(database)).get_revision(current)
    except CommandError:
        return "ahead", current, head
    return "behind", current, head


def is_usable(database: Database) -> bool:
    """The schema is this release's, or a newer release's (see `schema_state`)."""
    return schema_state(database)[0] != "behind"
