"""The application factory, the public endpoints and the one error shape."""

import subprocess
import sys

from alembic.script import ScriptDirectory
from sqlalchemy import text

from api import create_app
from experiments.storage import migrate
from experiments.storage.database import Database

ERROR_KEYS = {"code", "status", "message", "errors"}


def test_importing_the_app_creates_nothing(tmp_path):
    # A fresh interpreter imports every package: no instance folder, no database file appear.
    code = (
        "import api, api.cli, experiments.storage.tables, experiments.lifecycle, bandits, analysis"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    assert list(tmp_path.iterdir()) == []


def test_config_overrides_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KAIROS_DATABASE_URL", f"sqlite:///{tmp_path}/from-env.sqlite3")
    app = create_app(
        {"KAIROS_DATABASE_URL": f"sqlite:///{tmp_path}/given.sqlite3", "SECRET_KEY": "s"}
    )
    assert app.config["KAIROS_DATABASE_URL"].endswith("given.sqlite3")


def test_environment_configures_database(monkeypatch, tmp_path):
    monkeypatch.setenv("KAIROS_DATABASE_URL", f"sqlite:///{tmp_path}/from-env.sqlite3")
    monkeypatch.setenv("KAIROS_SECRET_KEY", "from-env")
    app = create_app()
    assert app.config["KAIROS_DATABASE_URL"].endswith("from-env.sqlite3")
    assert app.config["SECRET_KEY"] == "from-env"


def test_default_database_is_sqlite_in_instance_folder(monkeypatch):
    monkeypatch.delenv("KAIROS_DATABASE_URL", raising=False)
    monkeypatch.setenv("KAIROS_SECRET_KEY", "x")
    app = create_app()
    assert app.config["KAIROS_DATABASE_URL"] == f"sqlite:///{app.instance_path}/kairos.sqlite3"


def test_secret_key_is_generated_once_per_instance_folder(monkeypatch, tmp_path):
    from api.settings import instance_secret

    first = instance_secret(str(tmp_path))
    assert len(first) >= 32
    assert instance_secret(str(tmp_path)) == first


def test_health_reports_database_and_schema(client, backend):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["schema"] == "up to date"
    assert response.json["database"] == backend


def test_health_is_degraded_on_an_unmigrated_database(tmp_path):
    app = create_app(
        {"KAIROS_DATABASE_URL": f"sqlite:///{tmp_path}/empty.sqlite3", "SECRET_KEY": "s"}
    )
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert "kairos db upgrade" in response.json["schema"]


def test_health_during_a_rolling_upgrade(tmp_path):
    """A newer release migrated the database: the old nodes stay in rotation (ready, saying
    so) until replaced; a database behind this release is not ready."""
    url = f"sqlite:///{tmp_path}/kairos.sqlite3"
    database = Database(url)
    migrate.upgrade(database)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    app = create_app({"KAIROS_DATABASE_URL": url, "SECRET_KEY": "s"})
    response = app.test_client().get("/health")
    assert response.status_code == 200, response.json
    assert response.json["schema"].startswith("newer than this release (0099_from_the_future;")
    assert migrate.is_usable(database) and not migrate.is_up_to_date(database)

    head = migrate.head_revision(database)
    previous = ScriptDirectory.from_config(migrate.alembic_config(database)).get_revision(head)
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE alembic_version SET version_num = :rev"),
            {"rev": previous.down_revision},
        )
    response = app.test_client().get("/health")
    assert response.status_code == 503 and "run 'kairos db upgrade'" in response.json["schema"]
    assert not migrate.is_usable(database)
    database.dispose()


def test_openapi_documents_every_v1_route_with_bearer_auth(client):
    spec = client.get("/openapi.json").json
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "/v1/experiments" in spec["paths"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/") and method in ("get", "post", "put", "patch", "delete"):
                assert operation["security"] == [{"bearerAuth": []}], (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
                assert operation.get("summary"), (method, path)


def test_docs_page_and_its_assets_are_served_locally(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert b"/docs/assets/swagger-ui-bundle.js" in page.data
    asset = client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.data) > 100_000
    asset.close()


def test_unknown_route_is_404_in_the_error_shape(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert set(response.json) == ERROR_KEYS
    assert response.json["status"] == "Not Found"


def test_wrong_method_is_405_in_the_error_shape(client):
    response = client.delete("/health")
    assert response.status_code == 405
    assert set(response.json) == ERROR_KEYS
    assert "GET" in response.headers["Allow"]


def test_unhandled_error_is_500_in_the_error_shape(app):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaboom")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert set(response.json) == ERROR_KEYS
    assert "kaboom" not in response.json["message"]


def test_openapi_says_what_the_server_does(client):
    """Found by schemathesis: where the document and the server disagreed."""
    spec = client.get("/openapi.json").json
    schemas, paths = spec["components"]["schemas"], spec["paths"]
    # open bounds are open: win_probability 0.5 is refused, so it is not documented as allowed
    publish = schemas["Publish"]["properties"]
    assert publish["win_probability"]["exclusiveMinimum"] == 0.5
    assert "minimum" not in publish["win_probability"]
    # an empty body is no fields: bodies of the actions are optional
    for path in ("start", "pause", "conclude", "reweight"):
        operation = paths[f"/v1/experiments/{{key}}/{path}"]["post"]
        assert operation["requestBody"]["required"] is False, path
    assert paths["/v1/experiments/{key}/learnings"]["post"]["requestBody"]["required"] is False
    # the pagination header is a JSON object
    header = paths["/v1/experiments"]["get"]["responses"]["200"]["headers"]["X-Pagination"]
    assert "application/json" in header["content"]
    # fields that may be null say so
    experiment = schemas["Experiment"]["properties"]
    assert "null" in experiment["quiet_hours"]["type"]
    assert "null" in experiment["bandit"]["type"]
    assert "null" in schemas["Learning"]["properties"]["lift"]["type"]
    # an unknown metric or segment is a 422, as every broken rule
    assert "422" in paths["/v1/experiments/{key}/results"]["get"]["responses"]
