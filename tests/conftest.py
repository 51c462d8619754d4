"""Fixtures: a fresh app on a fresh database, on SQLite and on a real PostgreSQL server.

Tests that take `app`, `client`, `database` or `keys` run once per backend.
"""

import os
import random
import shutil
import zlib

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlmodel import SQLModel

from api import create_app
from api.db import get_database
from experiments import lifecycle
from experiments.keys import create_key
from experiments.storage import migrate
from experiments.storage.database import Database
from tests.pg import PostgresCluster


@pytest.fixture(autouse=True)
def seeded_hash_seeds(request, monkeypatch):
    """Hash seeds drawn from a generator seeded by the test's name: which unit lands in which
    arm, hence every count a test reads, is the same every run (a test whose assertions hold
    for most seeds but not all would otherwise fail now and then, on CI)."""
    seeds = random.Random(zlib.crc32(request.node.nodeid.encode()))
    monkeypatch.setattr(lifecycle, "SEEDS", seeds)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a server for the suite: a throwaway cluster unless one is given."""
    given = os.environ.get("KAIROS_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def create_postgres_database(server_url: str, name: str) -> str:
    admin = Database(server_url)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return str(admin.url.set(database=name).render_as_string(hide_password=False))


@pytest.fixture(scope="session")
def postgres_test_url(postgres_url):
    """One migrated database, emptied before each test that uses it."""
    url = create_postgres_database(postgres_url, "kairos_test")
    database = Database(url)
    migrate.upgrade(database)
    database.dispose()
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite file, copied for each test (cheaper than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "kairos.sqlite3"
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    with database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.dispose()
    return path


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def database_url(request, backend, tmp_path, sqlite_template):
    if backend == "sqlite":
        path = tmp_path / "kairos.sqlite3"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_test_url")
    empty_postgres(url)
    return url


def empty_postgres(url: str) -> None:
    database = Database(url)
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with database.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    database.dispose()


@pytest.fixture
def app(database_url, tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "KAIROS_DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret",
            "KAIROS_CACHE_SECONDS": 0,
        }
    )
    app.instance_path = str(tmp_path / "instance")
    yield app
    get_database_of(app).dispose()


@pytest.fixture
def nodes(database_url):
    """nodes(n): n more app instances (own engines, as separate workers or hosts would have)
    on this test's database; disposed at the end. `cache_seconds` is their
    KAIROS_CACHE_SECONDS (0: every request re-reads the experiment's stamp)."""
    made = []

    def make(n: int = 2, cache_seconds: float = 0) -> list:
        apps = [
            create_app(
                {
                    "KAIROS_DATABASE_URL": database_url,
                    "SECRET_KEY": "s",
                    "TESTING": True,
                    "KAIROS_CACHE_SECONDS": cache_seconds,
                }
            )
            for _ in range(n)
        ]
        made.extend(apps)
        return apps

    yield make
    for node in made:
        get_database_of(node).dispose()


def get_database_of(app) -> Database:
    with app.app_context():
        return get_database()


@pytest.fixture
def database(app) -> Database:
    return get_database_of(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def keys(database) -> dict[str, dict[str, str]]:
    """Authorization headers of one key per scope: keys['manage'] → {'Authorization': …}."""
    headers = {}
    with database.session(write=True) as session:
        for scope in ("admin", "manage", "assign", "read"):
            _, token = create_key(session=session, name=f"{scope}-key", scopes=[scope])
            headers[scope] = {"Authorization": f"Bearer {token}"}
    return headers


@pytest.fixture
def runner(database_url, monkeypatch):
    """Invoke the `kairos` CLI against this test's database."""
    monkeypatch.setenv("KAIROS_DATABASE_URL", database_url)
    return CliRunner()
