"""The dependency direction api → experiments → {bandits, analysis}, and where SQL may be
written, enforced on the source."""

import ast
import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What the pure maths (numpy, scipy, PyMC over arrays) never imports: the web, the database, the
# domain.
PURE = {
    "flask",
    "flask_smorest",
    "sqlmodel",
    "sqlalchemy",
    "marshmallow",
    "api",
    "experiments",
    "alembic",
    "webargs",
}
# package: top-level modules it must never import
FORBIDDEN = {
    "bandits": PURE,
    "analysis": PURE,
    "experiments": {"flask", "flask_smorest", "marshmallow", "api", "webargs"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upper_layers(package):
    for path in sources(package):
        bad = imported_modules(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_views_hold_no_sql():
    for path in (ROOT / "api").rglob("routes.py"):
        bad = imported_modules(path) & {"sqlalchemy", "sqlmodel", "numpy", "scipy"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_pages_hold_no_sql_and_no_statistics():
    """The pages (templates, views, plots) present what the domain answers: they reach storage
    and statistics only through experiments/."""
    for path in sources("api/pages"):
        bad = imported_modules(path) & {
            "sqlalchemy",
            "sqlmodel",
            "numpy",
            "scipy",
            "pymc",
            "analysis",
            "bandits",
        }
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


# Raw SQL (sqlalchemy's text(), DB-API cursors, the driver connection, SQL written in strings,
# a statement per database dialect) lives in the storage modules only; services compose
# SQLAlchemy/SQLModel queries that read the same on either database.
RAW_SQL_HOMES = (
    "experiments/storage/*.py",
    "experiments/storage/migrations/**/*.py",
    "experiments/**/store.py",
    "experiments/statistics/cells.py",  # the arm-statistics read model
)
# Modules outside the homes that still hold raw SQL, each with why. Remove a line when its
# SQL moves into a storage module (test_raw_sql_exceptions_are_still_needed says when).
RAW_SQL_EXCEPTIONS = {
    "experiments/analysis_jobs.py": "claiming a job: FOR UPDATE SKIP LOCKED on PostgreSQL only",
    "experiments/overview.py": "time buckets: date_trunc/to_char on PostgreSQL, strftime on SQLite",
}
SQL_IN_STRINGS = re.compile(r"\b(INSERT INTO|SELECT |UPDATE |DELETE FROM|PRAGMA )")
DIALECTS = {"postgresql", "sqlite"}
DRIVER_ATTRIBUTES = {"exec_driver_sql", "driver_connection", "dbapi_connection", "raw_connection"}


def raw_sql(path: Path) -> list[str]:
    """Where a module writes SQL itself, as 'line: what'."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    sqlalchemy_modules = {"sqlalchemy", "sqlmodel"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            sqlalchemy_modules |= {
                alias.asname or alias.name
                for alias in node.names
                if alias.name.split(".")[0] in ("sqlalchemy", "sqlmodel")
            }
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "sqlalchemy",
            "sqlmodel",
        ):
            if any(alias.name == "text" for alias in node.names):
                found.append(f"{node.lineno}: imports text() from {node.module}")
        elif isinstance(node, ast.Attribute):
            if node.attr in DRIVER_ATTRIBUTES:
                found.append(f"{node.lineno}: .{node.attr}")
            elif node.attr == "cursor" or (
                node.attr in ("execute", "executemany")
                and isinstance(node.value, ast.Name)
                and "cursor" in node.value.id
            ):
                found.append(f"{node.lineno}: a DB-API cursor")
            elif (
                node.attr == "text"
                and isinstance(node.value, ast.Name)
                and node.value.id in sqlalchemy_modules
            ):
                found.append(f"{node.lineno}: {node.value.id}.text()")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and SQL_IN_STRINGS.search(node.value)
        ):
            found.append(f"{node.lineno}: SQL in a string: {node.value[:40]!r}")
        elif isinstance(node, ast.Compare) and any(
            isinstance(side, ast.Constant) and side.value in DIALECTS
            for side in [node.left, *node.comparators]
        ):
            found.append(f"{node.lineno}: a statement per dialect")
    return found


def in_a_home(relative: str) -> bool:
    return any(fnmatch.fnmatch(relative, pattern) for pattern in RAW_SQL_HOMES)


def test_raw_sql_lives_only_in_storage_modules():
    """Raw SQL only in experiments/storage/, the `store.py` beside a service and the
    statistics read model; the views, the fast lane and every other module of api/ included.
    (api/ may branch on the dialect for its processes: lock files, the analysis worker.)"""
    offenders = []
    for package in ("api", "experiments"):
        for path in sources(package):
            relative = str(path.relative_to(ROOT))
            if in_a_home(relative) or relative in RAW_SQL_EXCEPTIONS:
                continue
            offenders += [
                f"{relative}:{where}"
                for where in raw_sql(path)
                if package == "experiments" or not where.endswith("a statement per dialect")
            ]
    assert not offenders, "raw SQL outside the storage modules:\n" + "\n".join(offenders)


def test_raw_sql_exceptions_are_still_needed():
    for relative in RAW_SQL_EXCEPTIONS:
        path = ROOT / relative
        assert path.exists() and raw_sql(path), f"{relative} holds no raw SQL now: drop it"


def test_the_checks_find_raw_sql():
    """The detector itself: each form of raw SQL is found, an ORM query is not."""
    assert in_a_home("experiments/outcomes/store.py")
    assert in_a_home("experiments/storage/migrations/versions/0001_initial_schema.py")
    assert not in_a_home("experiments/outcomes/ingest.py")
    for path in (
        ROOT / "experiments/storage/database.py",  # PRAGMAs, exec_driver_sql
        ROOT / "experiments/assignment/store.py",  # cursors, INSERT INTO
        ROOT / "experiments/overview.py",  # a bucket per dialect
    ):
        assert raw_sql(path), path
    assert not raw_sql(ROOT / "experiments/storage/repository.py")  # SQLModel queries only


# api/ reaches the database through experiments/ only. These imports of sqlalchemy/sqlmodel
# are the whole of what it may take, each for its reason.
API_SQLALCHEMY_IMPORTS = {
    "api/db.py": {"sqlmodel.Session"},  # the type of the request's session it opens
    "api/__init__.py": {"sqlalchemy.exc.OperationalError"},  # registered as an error handler
    "api/errors.py": {"sqlalchemy.exc.OperationalError"},  # a busy database answers 503
    "api/server.py": {"sqlalchemy.engine.URL"},  # the database URL names the analysis lock
    # an unreachable database is said in a sentence, not a traceback
    "api/cli/database.py": {"sqlalchemy.exc.OperationalError"},
}


def sqlalchemy_imports(path: Path) -> set[str]:
    """Every name a module takes from sqlalchemy or sqlmodel, as 'module.name'."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {
                alias.name
                for alias in node.names
                if alias.name.split(".")[0] in ("sqlalchemy", "sqlmodel")
            }
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "sqlalchemy",
            "sqlmodel",
        ):
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_api_imports_no_sqlalchemy_beyond_its_list():
    """The fast lane, the views and the rest of api/ import no sqlalchemy or sqlmodel: only
    the session's type in api/db.py and the database's error and URL types where listed."""
    for path in sources("api"):
        relative = str(path.relative_to(ROOT))
        allowed = API_SQLALCHEMY_IMPORTS.get(relative, set())
        taken = sqlalchemy_imports(path)
        assert taken <= allowed, f"{relative} imports {sorted(taken - allowed)}"
        assert allowed <= taken, f"{relative} no longer imports {sorted(allowed - taken)}: drop it"


# The rooms of experiments/, from the ground up: each may import only rooms listed before it,
# so that data flows one way (experiments/__init__.py describes each).
ROOMS = (
    "errors",
    "clock",
    "vocabulary",
    "bounds",
    "spec",
    "telemetry",
    "storage",
    "segmentation",
    "snapshot",
    "lifecycle",
    "keys",
    "health",
    "statistics",
    "results",
    "learnings",
    "analysis_jobs",
    "allocation",
    "outcomes",
    "assignment",
    "overview",
    "workflows",
)


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "experiments" and len(parts) > 1 else None


def test_every_room_of_experiments_is_placed():
    present = {p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "__init__"}
    present |= {p.parent.name for p in (ROOT / "experiments").glob("*/__init__.py")}
    assert present == set(ROOMS)


def test_rooms_import_only_the_rooms_below_them():
    backwards = []
    for path in sources("experiments"):
        relative = path.relative_to(ROOT / "experiments")
        if relative.parts[0] == "__init__.py" or "migrations" in relative.parts:
            continue
        own = relative.parts[0].removesuffix(".py")
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                other = room_of(module)
                if other in ROOMS and other != own and ROOMS.index(other) > ROOMS.index(own):
                    backwards.append(f"experiments/{relative}:{node.lineno} imports {module}")
    assert not backwards, "an import against the rooms' order:\n" + "\n".join(backwards)
