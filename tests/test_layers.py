"""The dependency direction api → experiments → {bandits, analysis}, enforced on the source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package: top-level modules it must never import
FORBIDDEN = {
    "bandits": {
        "flask",
        "flask_smorest",
        "sqlmodel",
        "sqlalchemy",
        "marshmallow",
        "api",
        "experiments",
        "alembic",
        "webargs",
    },
    "analysis": {
        "flask",
        "flask_smorest",
        "sqlmodel",
        "sqlalchemy",
        "marshmallow",
        "api",
        "experiments",
        "alembic",
        "webargs",
    },
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
