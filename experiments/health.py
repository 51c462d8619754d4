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
        current, head = migrate.current_revision(database), migrate.head_revision(database)
    except SQLAlchemyError as error:
        return {
            **report,
            "status": "degraded",
            "schema": f"unreachable: {error.__class__.__name__}",
        }
    if current != head:
        return {
            **report,
            "status": "degraded",
            "schema": f"at {current or 'nothing'}, newest is {head}: run 'kairos db upgrade'",
        }
    return {**report, "schema": "up to date"}
