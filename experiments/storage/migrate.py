"""Schema migrations (Alembic), driven from Python so `kairos db upgrade` needs no alembic.ini."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

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
