"""The database bound to the app, and one session per request."""

from flask import Flask, current_app, g, has_request_context, request
from sqlmodel import Session

from experiments.snapshot import SnapshotCache
from experiments.storage.database import Database

EXTENSION = "kairos.database"
CACHE_EXTENSION = "kairos.snapshot_cache"
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def init_database(app: Flask) -> Database:
    database = Database(app.config["KAIROS_DATABASE_URL"])
    app.extensions[EXTENSION] = database
    app.extensions[CACHE_EXTENSION] = SnapshotCache(ttl=float(app.config["KAIROS_CACHE_SECONDS"]))
    app.teardown_appcontext(close_session)
    return database


def get_database() -> Database:
    return current_app.extensions[EXTENSION]


def get_snapshot_cache() -> SnapshotCache:
    return current_app.extensions[CACHE_EXTENSION]


def get_session() -> Session:
    """This request's session, opened on first use. A request that may write (POST, …) gets
    a session that takes SQLite's write lock when its transaction begins."""
    if "db_session" not in g:
        write = not has_request_context() or request.method not in READ_METHODS
        g.db_session = get_database().new_session(write=write)
    return g.db_session


def close_session(_exception=None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
