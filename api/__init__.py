"""Kairos HTTP API: the Flask application factory.

gunicorn 'api:create_app()'
"""

from collections.abc import Mapping

from flask import Flask, send_from_directory
from flask.sessions import SessionInterface
from flask_smorest import Api
from marshmallow import validate
from sqlalchemy.exc import OperationalError
from swagger_ui_bundle import swagger_ui_path

from api import converters, errors, pages, request_telemetry, rules
from api.auth import SECURITY_SCHEME
from api.blueprint import refuse_bodies_that_are_not_json
from api.db import init_database
from api.fastlane import FAST_LANE, AssignmentFastLane
from api.jsonio import OrjsonProvider
from api.logs import configure_logging
from api.settings import instance_secret, load_settings
from experiments.errors import KairosError


class NoSessions(SessionInterface):
    """Kairos keeps no cookie sessions; Flask's default signs and parses one per request."""

    def open_session(self, app, request):
        return None  # Flask then uses a null session

    def save_session(self, app, session, response):
        pass


class KairosApi(Api):
    """flask-smorest's Api with Kairos's one error shape."""

    ERROR_SCHEMA = errors.ErrorSchema
    # Each operation lists its own refusals (api/blueprint.py), none falls back on "default".
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error):
        return pages.page_error(error) or errors.handle_http_exception(error)


def create_app(config: Mapping | None = None) -> Flask:
    """Build the app; `config` overrides settings read from the environment (tests use it)."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(load_settings(app.instance_path))
    app.config.update(
        API_TITLE="Kairos",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Served from the swagger-ui-bundle package: /docs works with no internet access.
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
    )
    if config:
        app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(app.instance_path)
    # A doubled slash is a 404 like any path that names nothing, not a redirect with an HTML
    # body to the path with one slash.
    app.url_map.merge_slashes = False
    app.json = OrjsonProvider(app)
    # The API keeps no cookie sessions; the pages (below) keep one under /ui only.
    app.session_interface = NoSessions()

    configure_logging(app)
    init_database(app)

    api = KairosApi(
        app,
        spec_kwargs={
            "info": {
                "description": "Decide the timing, tone and channel of lifecycle messages, "
                "learn what works for whom, and keep what was learned."
            }
        },
    )
    api.spec.components.security_scheme("bearerAuth", SECURITY_SCHEME)
    api.ma_plugin.converter.add_attribute_function(exclusive_bounds)
    rules.document_schema_keywords(api.ma_plugin.converter)
    converters.register(app, api)
    for blueprint in blueprints():
        api.register_blueprint(blueprint)
    app.register_error_handler(KairosError, errors.handle_domain_error)
    app.register_error_handler(OperationalError, errors.handle_database_error)
    app.before_request(refuse_bodies_that_are_not_json)
    app.add_url_rule(
        "/docs/assets/<path:filename>",
        endpoint="docs_assets",
        view_func=lambda filename: send_from_directory(swagger_ui_path, filename),
    )
    if app.config.get("KAIROS_PAGES", True):
        pages.init_app(app)
    errors.answer_refusals_in_json()
    if app.config.get("KAIROS_FAST_LANE", True):
        app.wsgi_app = app.extensions[FAST_LANE] = AssignmentFastLane(app, app.wsgi_app)
    request_telemetry.init_app(app)
    return app


def exclusive_bounds(converter, field, ret, **kwargs) -> dict:
    """apispec documents a Range's bounds as inclusive whatever the validator says; an open
    bound (`min_inclusive=False`) is OpenAPI 3.1's numeric exclusiveMinimum/Maximum."""
    found = {}
    for validator in field.validators:
        if not isinstance(validator, validate.Range):
            continue
        if validator.min is not None and not validator.min_inclusive and "minimum" in ret:
            found["exclusiveMinimum"] = ret.pop("minimum")
        if validator.max is not None and not validator.max_inclusive and "maximum" in ret:
            found["exclusiveMaximum"] = ret.pop("maximum")
    return found


def blueprints() -> list:
    from api.analyses.routes import blp as analyses
    from api.assignments.routes import blp as assignments
    from api.experiments.routes import blp as experiments
    from api.health.routes import blp as health
    from api.learnings.routes import blp as learnings
    from api.metrics.routes import blp as metrics
    from api.outcomes.routes import blp as outcomes
    from api.results.routes import blp as results

    return [health, metrics, experiments, assignments, outcomes, results, analyses, learnings]
