"""The simulator is a client of Kairos's HTTP API and nothing more, enforced on the source:
it imports none of the server's packages or their frameworks, and only `kairos simulate`
(api/cli/simulate.py) imports it."""

from tests.test_layers import ROOT, imported_modules, sources

SERVER_SIDE = {
    "api",
    "experiments",
    "bandits",
    "analysis",
    "flask",
    "flask_smorest",
    "marshmallow",
    "sqlalchemy",
    "sqlmodel",
    "alembic",
}


def test_the_simulator_knows_kairos_only_through_http():
    for path in sources("simulator"):
        bad = imported_modules(path) & SERVER_SIDE
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_only_kairos_simulate_imports_the_simulator():
    importers = [
        path.relative_to(ROOT).as_posix()
        for package in ("api", "experiments", "bandits", "analysis")
        for path in sources(package)
        if "simulator" in imported_modules(path)
    ]
    assert importers == ["api/cli/simulate.py"]
