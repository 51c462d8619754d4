"""The one place that reads Kairos configuration from the environment."""

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

DEFAULT_DATABASE_FILE = "kairos.sqlite3"


def load_settings(instance_path: str, environ: Mapping[str, str] | None = None) -> dict:
    """Flask config keys for this process, from `KAIROS_*` environment variables.

    - KAIROS_DATABASE_URL: SQLAlchemy URL; default: a SQLite file in the instance folder.
    - KAIROS_SECRET_KEY: Flask secret key; default: a random key kept in the instance folder
      (see `instance_secret`).
    - KAIROS_LOG_LEVEL: logging level name; default INFO.
    - KAIROS_LOG_FORMAT: "text" (default) or "json": one JSON object per line (api/logs.py).
    - KAIROS_ACCESS_LOG: "1" or "true" writes a line per request (method, route, status,
      duration, request id, pid); default: on with JSON logs, off with text.
    - KAIROS_CACHE_SECONDS: how long a worker reuses an experiment's configuration before
      reading it again (default 1 s; state changes made by other workers show within it;
      a request with a simulated `now` re-checks every time).
    - KAIROS_RUN_WORKER: run the analysis worker as a thread of `kairos serve` ("auto": only on
      the embedded SQLite default).
    - KAIROS_UI_COOKIE_SECURE: "1" or "true" marks the pages' session cookie Secure (sent over
      HTTPS only); default off, since `make run` serves plain HTTP on localhost.
    """
    environ = os.environ if environ is None else environ
    database_url = environ.get("KAIROS_DATABASE_URL") or (
        f"sqlite:///{Path(instance_path) / DEFAULT_DATABASE_FILE}"
    )
    log_format = log_format_of(environ)
    return {
        "KAIROS_DATABASE_URL": database_url,
        "SECRET_KEY": environ.get("KAIROS_SECRET_KEY"),
        "KAIROS_LOG_LEVEL": environ.get("KAIROS_LOG_LEVEL", "INFO").upper(),
        "KAIROS_LOG_FORMAT": log_format,
        "KAIROS_ACCESS_LOG": environ.get(
            "KAIROS_ACCESS_LOG", "1" if log_format == "json" else ""
        ).lower()
        in ("1", "true", "yes"),
        "KAIROS_RUN_WORKER": environ.get("KAIROS_RUN_WORKER", "auto").lower(),
        "KAIROS_CACHE_SECONDS": float(environ.get("KAIROS_CACHE_SECONDS", "1.0")),
        "KAIROS_UI_COOKIE_SECURE": environ.get("KAIROS_UI_COOKIE_SECURE", "").lower()
        in ("1", "true", "yes"),
    }


def log_format_of(environ: Mapping[str, str] | None = None) -> str:
    """KAIROS_LOG_FORMAT: "json", or "text" for anything else."""
    environ = os.environ if environ is None else environ
    return "json" if environ.get("KAIROS_LOG_FORMAT", "").lower() == "json" else "text"


def instance_secret(instance_path: str) -> str:
    """A random secret generated once per instance folder, so every worker shares it."""
    path = Path(instance_path) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then linked into place: the link fails if another process won the race,
    # and nobody ever reads a half-written file.
    temporary = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
    temporary.write_text(secrets.token_urlsafe(32))
    temporary.chmod(0o600)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text().strip()
