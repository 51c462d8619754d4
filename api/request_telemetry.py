"""Every request, whoever answers it (Flask or the fast lane): an id, echoed in the
`X-Request-Id` response header and carried by every log line written while answering; its
count and latency in /metrics, by route; and, with the access log on, one log line.

The id is the client's `X-Request-Id` when that is a short safe token (so a journey engine
can follow its own id through Kairos's logs), else a new random one: a header that could
forge log lines or bloat them (control characters, 500 characters) is not repeated.

Routes are Flask's URL rules (`/v1/experiments/<key:key>`), never paths, so the number of
series stays bounded whatever clients send; a request no rule matched is `unmatched`.
"""

import logging
import re
import secrets
import time

from flask import Flask, request

from api.logs import REQUEST_ID, REQUESTS_LOGGER
from experiments.telemetry import metrics

ROUTE = "kairos.route"  # the WSGI environ's key for the rule that answered
UNMATCHED = "unmatched"
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

log = logging.getLogger(REQUESTS_LOGGER)


def new_request_id() -> str:
    return secrets.token_hex(16)


def request_id_of(environ) -> str:
    given = environ.get("HTTP_X_REQUEST_ID", "")
    return given if SAFE_REQUEST_ID.fullmatch(given) else new_request_id()


class RequestTelemetry:
    """WSGI middleware around the whole app (the fast lane included)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        request_id = request_id_of(environ)
        context = REQUEST_ID.set(request_id)
        status = 500  # unless the app answers

        def respond(status_line, headers, exc_info=None):
            nonlocal status
            status = int(status_line[:3])
            headers.append(("X-Request-Id", request_id))
            return start_response(status_line, headers, exc_info)

        try:
            return self.wsgi_app(environ, respond)
        finally:
            record(environ, status, time.perf_counter() - started)
            REQUEST_ID.reset(context)


def record(environ, status: int, seconds: float) -> None:
    method = environ.get("REQUEST_METHOD", "")
    if method not in METHODS:
        method = "other"
    route = environ.get(ROUTE) or UNMATCHED
    found = metrics()
    found.http_requests.labels(route, method, str(status)).inc()
    found.http_duration.labels(route, method).observe(seconds)
    if log.isEnabledFor(logging.INFO):
        duration_ms = round(seconds * 1000, 2)
        log.info(
            "%s %s %s %.2f ms",
            method,
            route,
            status,
            duration_ms,
            extra={"method": method, "route": route, "status": status, "duration_ms": duration_ms},
        )


def note_route(response):
    """After every Flask request, errors included: the rule that answered, for record()."""
    rule = request.url_rule
    request.environ[ROUTE] = rule.rule if rule is not None else None
    return response


def init_app(app: Flask) -> None:
    """Call last in create_app: the middleware must wrap every other one."""
    app.after_request(note_route)
    app.wsgi_app = RequestTelemetry(app.wsgi_app)
