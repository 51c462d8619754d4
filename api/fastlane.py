"""The fast lane: `POST /v1/assignments` served without Flask's request machinery.

A single assignment is what journey engines call on every message, so its cost per request
is the service's capacity. Through Flask, flask-smorest, webargs and marshmallow, the request
around the assignment costs about twice the assignment itself (request context, URL routing,
schema load, response wrapping). This WSGI middleware serves the ordinary case directly: a
JSON body that certainly passes AssignmentRequestSchema (its experiment a slug, its unit
passing experiments/bounds.py's `unit_problems`, which are the rules the schema's fields
call), a bearer key granting `assign`, and an assignment that succeeds. It calls the same
`assign` with the same arguments and answers the same JSON bytes as the Flask view's dump
through AssignmentSchema (tests/api/test_fastlane.py compares them).

Anything else (another route, a body it is not sure of, no key, a wrong scope, a simulated
`now`, an unknown experiment, a paused one, any exception) is handed to Flask untouched, body
included, so that every error is still produced, in the one error shape, by one code path.
Nothing has been written when it hands over: assign raises before its transaction, and a
failed transaction is rolled back.
"""

import io
import logging

import orjson

from api.assignments.schemas import parse_unit
from api.auth import lookup_key
from api.db import CACHE_EXTENSION
from api.db import EXTENSION as DATABASE_EXTENSION
from api.jsonio import dumps
from api.request_telemetry import ROUTE
from experiments import bounds, keys
from experiments.assignment.assign import UnitRequest, assign

log = logging.getLogger(__name__)

PATH = "/v1/assignments"
FAST_LANE = "kairos.fast_lane"  # its app.extensions key (tests read `served`)


class AssignmentFastLane:
    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.served = 0  # answered here rather than by Flask (tests read it)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        answer = self._serve(environ)
        if answer is None:
            return self.wsgi_app(environ, start_response)
        self.served += 1
        environ[ROUTE] = PATH  # the Flask view's rule, for /metrics and the request log
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
        )
        return [answer]

    def _serve(self, environ) -> bytes | None:
        """The answer's bytes, or None to let Flask handle the request."""
        if not is_json_type(environ.get("CONTENT_TYPE", "")):
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        limit = self.app.config["MAX_CONTENT_LENGTH"]  # from it on Flask answers 413
        if length <= 0 or (limit is not None and length >= limit):
            return None
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)  # Flask reads it again if we hand over
        if len(raw) != length:  # the client closed early: Flask refuses it
            return None
        try:
            key = self._key(environ.get("HTTP_AUTHORIZATION", ""))
        except Exception:  # the database is down, say: Flask looks again and answers (a 503)
            log.debug("fast lane handing over to Flask", exc_info=True)
            return None
        if key is None or "assign" not in keys.granted_scopes(key):
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        unit = _unit(body)
        if unit is None:
            return None
        extensions = self.app.extensions
        try:
            (answer,) = assign(
                database=extensions[DATABASE_EXTENSION],
                cache=extensions[CACHE_EXTENSION],
                experiment_key=body["experiment"],
                units=[unit],
            )
        except Exception:  # the Flask view runs it again and answers the error its own way
            log.debug("fast lane handing over to Flask", exc_info=True)
            return None
        return dumps(answer)

    def _key(self, header: str):
        kind, _, token = header.partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            return None
        return lookup_key(self.app, token)


def is_json_type(content_type: str) -> bool:
    """The same test as Flask's `request.is_json`: application/json or application/*+json."""
    mimetype = content_type.partition(";")[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _unit(body) -> UnitRequest | None:
    """The unit if the body certainly passes AssignmentRequestSchema, else None. Any field
    but the experiment's key and the unit's (an admin's `now`, an unknown one) is Flask's."""
    if not isinstance(body, dict) or not bounds.is_slug(body.get("experiment")):
        return None
    unit = {name: value for name, value in body.items() if name != "experiment"}
    return parse_unit(unit)[0]
