"""A readiness check: the database answers and its schema is at the newest migration."""

from importlib.metadata import PackageNotFoundError, version

from sqlalchemy.exc import SQLAlchemyError

from experiments.storage import migrate
from experiments.storage.database import Database


def kairos_version() -> str:
    try:
        return version("kairos")
    except PackageNotFoundError:
        return "unknown"


def check(database: Database) -> dict:
    report = {"status": "ok", "database": database.dialect, "version": kairos_version()}
    try:
        database.ping()
        state, current, head = migrate.schema_state(database)
    except SQLAlchemyError as error:
        return {
            **report,
            "status": "degraded",
            "schema": f"unreachable: {error.__class__.__name__}",
        }
    if state == "behind":
        return {
            **report,
            "status": "degraded",
            "schema": f"at {current or 'nothing'}, newest is {head}: run 'kairos db upgrade'",
        }
    if state == "ahead":
        return {
            **report,
            "schema": f"newer than this release ({current}; it knows up to {head}): "
            "a newer release migrated it; replace this node with that release",
        }
    return {**report, "schema": "up to date"}
