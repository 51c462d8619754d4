"""The one error shape: {"code", "status", "message", "errors"} for every error, 404/405/500 too."""

import logging
from http import HTTPStatus

import orjson
from marshmallow import Schema, fields
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from experiments.errors import KairosError

log = logging.getLogger(__name__)

DEFAULT_MESSAGES = {
    400: "The request could not be understood; check that the body is valid JSON.",
    401: "Missing or invalid API key: send 'Authorization: Bearer <token>'.",
    403: "This API key's scopes do not allow this request.",
    404: "No such resource.",
    405: "This method is not allowed on this resource.",
    409: "The resource's current state does not allow this request.",
    413: "The request body is too large.",
    415: "Send the body as JSON (Content-Type: application/json).",
    422: "The request is well-formed but some fields are invalid.",
    500: "Internal server error; it has been logged.",
    503: "The database is busy or unreachable; nothing was changed. Retry shortly.",
}


class ErrorSchema(Schema):
    code = fields.Integer(required=True, metadata={"description": "HTTP status code"})
    status = fields.String(required=True, metadata={"description": "HTTP reason phrase"})
    message = fields.String(required=True, metadata={"description": "What went wrong"})
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        required=True,
        metadata={"description": "Messages per field, as dotted paths ('variants.0.weight')"},
    )


def error_payload(code: int, message: str | None = None, errors: dict | None = None) -> dict:
    flat = flatten_errors(errors or {})
    if message is None:
        message = DEFAULT_MESSAGES.get(code) or HTTPStatus(code).phrase
        if flat:
            field, messages = next(iter(flat.items()))
            message = f"Invalid {field}: {messages[0]}"
            more = sum(len(m) for m in flat.values()) - 1
            if more:
                message += f" (and {more} more)"
    return {"code": code, "status": HTTPStatus(code).phrase, "message": message, "errors": flat}


def flatten_errors(errors, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested errors ({"json": {"variants": {0: {"weight": [...]}}}}) as dotted
    paths ({"variants.0.weight": [...]}), dropping webargs' location level."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            key = str(key)
            if not prefix and key in ("json", "query", "view_args", "headers", "form"):
                path = ""
            elif key == "_schema":
                path = prefix or "body"
            else:
                path = f"{prefix}.{key}" if prefix else key
            for sub_path, messages in flatten_errors(value, path).items():
                flat.setdefault(sub_path, []).extend(messages)
    elif isinstance(errors, list) and all(isinstance(e, str) for e in errors):
        flat[prefix or "body"] = list(errors)
    elif isinstance(errors, list):
        for item in errors:
            for sub_path, messages in flatten_errors(item, prefix).items():
                flat.setdefault(sub_path, []).extend(messages)
    else:
        flat[prefix or "body"] = [str(errors)]
    return flat


def handle_http_exception(error: HTTPException):
    data = getattr(error, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    message = data.get("message")
    if message is None and error.code not in DEFAULT_MESSAGES and error.description:
        message = error.description
    headers = dict(data.get("headers") or {})
    if error.code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    if error.code == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="kairos"')
    return error_payload(error.code or 500, message, errors), error.code, headers


def handle_domain_error(error: KairosError):
    return error_payload(error.status, error.message, error.errors), error.status


def handle_database_error(error: OperationalError):
    """A database that is busy beyond the wait (SQLite's lock held past busy_timeout) or
    unreachable (PostgreSQL restarting, a dropped connection) is a 503 the client may retry:
    the transaction was rolled back. Any other operational error is a 500."""
    if _transient(error):
        log.warning("Database unavailable: %s", error.orig)
        return error_payload(503), 503, {"Retry-After": "1"}
    log.exception("Database error")
    return error_payload(500), 500


def _transient(error: OperationalError) -> bool:
    if error.connection_invalidated:
        return True
    text = str(error.orig).lower()
    if "database is locked" in text or "database is busy" in text:
        return True
    module = type(error.orig).__module__ or ""
    return module.startswith("psycopg")


def answer_refusals_in_json() -> None:
    """gunicorn refuses some requests before any app sees them (a request line over 4 KB: 414;
    a header over 8 KB: 431; broken chunked encoding: 400) and writes an HTML page for them.
    Its workers write it through `gunicorn.util.write_error`; this makes that the one JSON
    error shape. Idempotent; called by create_app, so plain `gunicorn 'api:create_app()'`
    answers the same way."""
    from gunicorn import util

    if getattr(util.write_error, "kairos", False):
        return

    from api.request_telemetry import new_request_id

    def write_error(sock, status_int, reason, mesg):
        body = orjson.dumps(error_payload(status_int, mesg or None)) + b"\n"
        request_id = new_request_id()  # the request's own was not read: a new one
        log.info(
            "refused by the server: %s %s",
            status_int,
            reason,
            extra={"request_id": request_id, "status": status_int},
        )
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Request-Id: {request_id}\r\n\r\n"
        )
        util.write_nonblock(sock, head.encode("latin-1") + body)

    write_error.kairos = True
    util.write_error = write_error
