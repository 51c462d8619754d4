"""A readiness check: the database answers and its schema is at the newest migration.

A check waits at most `ANSWER_WITHIN` for the database: a database that hangs (frozen, or
behind a network that drops packets) must make a node not ready, not hold every thread that
a load balancer's probes arrive on. The look itself runs in a thread of its own, and a probe
that arrives while an earlier look still waits joins that look instead of starting another,
so a hung database costs one thread, however many probes come.
"""

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as NoAnswer
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy.exc import SQLAlchemyError

from experiments.storage import migrate
from experiments.storage.database import Database


def kairos_version() -> str:
    try:
        return version("kairos")
    except PackageNotFoundError:
        return "unknown"


ANSWER_WITHIN = 2.0  # seconds

_looking = threading.Lock()
_looks: dict[int, Future] = {}  # id(database) → the look in flight


def _look(database: Database) -> Future:
    with _looking:
        look = _looks.get(id(database))
        if look is None or look.done():
            look = _looks[id(database)] = Future()

            def run():
                try:
                    database.ping()
                    look.set_result(migrate.schema_state(database))
                except BaseException as error:  # handed to the probe that waits
                    look.set_exception(error)

            threading.Thread(target=run, name="kairos-health", daemon=True).start()
    return look


def check(database: Database, answer_within: float = ANSWER_WITHIN) -> dict:
    report = {"status": "ok", "database": database.dialect, "version": kairos_version()}
    try:
        state, current, head = _look(database).result(timeout=answer_within)
    except NoAnswer:
        return {
            **report,
            "status": "degraded",
            "schema": f"unreachable: no answer within {answer_within:g} s",
        }
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
