"""Logging: text lines by default, JSON lines with KAIROS_LOG_FORMAT=json (`kairos serve
--log-format json`), each carrying the id of the request it was written in.

What a line may carry: the request's method, route (the URL rule, never the path and never
its query string), status, duration, request id and process id; a message and, for an error,
its traceback. Never a header, a body or a query: a token or a unit's attributes would be in
them (tests/api/test_observability.py sends both and looks for them in every line).
"""

import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
REQUESTS_LOGGER = "api.requests"

# The id of the request this thread is answering (set by api/request_telemetry.py).
REQUEST_ID: ContextVar[str | None] = ContextVar("kairos_request_id", default=None)

# Attributes of a record that a JSON line carries when a call set them (`extra=`).
REQUEST_FIELDS = ("method", "route", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, request_id if any, the
    request's fields on a request line, the traceback of an error."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            line["request_id"] = request_id
        for name in REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The usual text line, with the request id at the end when there is one."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            first, newline, rest = text.partition("\n")
            text = f"{first} request_id={request_id}{newline}{rest}"
        return text


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(app) -> None:
    """Kairos's loggers at KAIROS_LOG_LEVEL, into one stderr handler in KAIROS_LOG_FORMAT,
    unless the process already has one (gunicorn's, pytest's): then into that."""
    level = getattr(logging, app.config["KAIROS_LOG_LEVEL"], logging.INFO)
    root = logging.getLogger()
    # Ours, if this process made one already: `kairos serve` builds an app before
    # `--log-format` is read, and its gunicorn workers inherit that handler when they fork.
    handler = next((h for h in root.handlers if getattr(h, "kairos", False)), None)
    if handler is None and not root.handlers:
        handler = logging.StreamHandler()
        handler.kairos = True
        root.addHandler(handler)
    if handler is not None:
        handler.setFormatter(formatter(app.config["KAIROS_LOG_FORMAT"]))
    for name in ("api", "experiments", "bandits", "analysis"):
        logging.getLogger(name).setLevel(level)
    # The request lines are INFO: on with the access log, whatever KAIROS_LOG_LEVEL says.
    requests = logging.getLogger(REQUESTS_LOGGER)
    requests.setLevel(logging.INFO if app.config["KAIROS_ACCESS_LOG"] else logging.WARNING)


# A query string (to the next space or quote) and a bearer token, wherever a message quotes them.
SECRET_SHAPES = re.compile(r"\?[^\s'\"]*|(?i:bearer)\s+[^\s'\"]+")


def without_secrets(record: logging.LogRecord) -> bool:
    """A logging filter: the record's message with any query string or bearer token cut out
    (for messages Kairos does not write itself, e.g. gunicorn's on a request it refused)."""
    message = record.getMessage()
    cleaned = SECRET_SHAPES.sub(
        lambda m: "?…" if m.group().startswith("?") else "Bearer …", message
    )
    if cleaned != message:
        record.msg, record.args = cleaned, None
    return True
