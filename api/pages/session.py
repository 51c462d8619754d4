"""The pages' sign-in: a signed cookie session under /ui only, and CSRF tokens for its forms.

The API keeps no cookies (a bearer token per request); the pages, read in a browser, keep the
signed-in key's id in a signed, HttpOnly, SameSite=Lax cookie whose path is /ui, so no API
answer ever sets or reads one. Every form posts a token kept in that session (the synchroniser
token pattern); a POST without it, or with another session's, is refused.
"""

import hmac
import secrets

from flask import abort, request, session
from flask.sessions import SecureCookieSessionInterface

PREFIX = "/ui"
COOKIE = "kairos_ui"
CSRF_FIELD = "csrf_token"


def is_page(path: str) -> bool:
    """Whether a path is the pages' (under /ui), matched to a view or not."""
    return path == PREFIX or path.startswith(PREFIX + "/")


class PagesOnlySessions(SecureCookieSessionInterface):
    """Flask's signed cookie session for requests under /ui; none (a null session) elsewhere."""

    salt = "kairos-pages-session"

    def _mine(self, request) -> bool:
        return is_page(request.path)

    def open_session(self, app, request):
        if not self._mine(request):
            return None
        return super().open_session(app, request)

    def save_session(self, app, session, response):
        if not self._mine(request):
            return
        super().save_session(app, session, response)

    def get_cookie_name(self, app) -> str:
        return COOKIE

    def get_cookie_path(self, app) -> str:
        return PREFIX

    def get_cookie_httponly(self, app) -> bool:
        return True

    def get_cookie_samesite(self, app) -> str:
        return app.config.get("KAIROS_UI_COOKIE_SAMESITE", "Lax")

    def get_cookie_secure(self, app) -> bool:
        # Off by default: `make run` serves plain HTTP on localhost. Behind TLS, set
        # KAIROS_UI_COOKIE_SECURE=1 (api/settings.py).
        return bool(app.config.get("KAIROS_UI_COOKIE_SECURE"))


def csrf_token() -> str:
    """This session's form token, made on first use."""
    token = session.get(CSRF_FIELD)
    if token is None:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def check_csrf() -> None:
    """Refuse (400) a state-changing request whose form token is missing or not this session's."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD, "")
    # As bytes: compare_digest refuses str with characters beyond ASCII (a 500 before).
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        abort(400, description="The form's security token is missing or expired: reload the page.")
