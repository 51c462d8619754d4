"""Bearer-token authentication and scope checks, declared on each view method."""

import functools
import time
from copy import deepcopy

from flask import current_app, g, request
from flask_smorest import abort

from api.db import EXTENSION as DATABASE_EXTENSION
from experiments import keys
from experiments.storage.tables import ApiKey

KEY_CACHE = "kairos.key_cache"
SECURITY_SCHEME = {"type": "http", "scheme": "bearer", "description": "An API key's token."}


def current_key() -> ApiKey | None:
    return g.get("api_key")


def is_admin() -> bool:
    key = current_key()
    return key is not None and "admin" in key.scopes.split(",")


def simulated_now(body: dict):
    """The body's `now` (a simulated clock for backfills and simulations), if the key is an
    admin's; anyone else's `now` is ignored and the real time is used."""
    return body.get("now") if is_admin() else None


def authorize(scope: str) -> ApiKey:
    """The request's key if it grants `scope`; abort 401 (no valid key) or 403 (wrong scope)."""
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        abort(401)
    key = _authenticate(token.strip())
    if key is None:
        abort(401, message="Invalid or revoked API key.")
    if scope not in keys.granted_scopes(key):
        abort(
            403,
            message=f"This API key ('{key.name}', scopes {key.scopes}) lacks the "
            f"'{scope}' scope this request needs.",
        )
    g.api_key = key
    return key


def _authenticate(token: str) -> ApiKey | None:
    return lookup_key(current_app, token)


def lookup_key(app, token: str) -> ApiKey | None:
    """The key of this token, remembered for KAIROS_CACHE_SECONDS: a key lookup per request
    would cost as much as the assignment it guards. A revocation so takes effect everywhere
    within that time. Takes the app, not the request context (the fast lane has none)."""
    ttl = app.config["KAIROS_CACHE_SECONDS"]
    remembered = app.extensions.setdefault(KEY_CACHE, {})
    digest = keys.hash_token(token)
    now = time.monotonic()
    entry = remembered.get(digest)
    if entry is not None and now - entry[0] < ttl:
        return entry[1]
    # A short read of its own, so that a writing request does not hold SQLite's write lock
    # while it is still being authenticated.
    with app.extensions[DATABASE_EXTENSION].session() as session:
        key = keys.authenticate(session=session, token=token)
    if ttl > 0:
        if len(remembered) > 10_000:
            remembered.clear()
        remembered[digest] = (now, key)
    return key


def requires(scope: str):
    """Decorate a view method: only keys granting `scope` may call it. Documents it in OpenAPI."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            authorize(scope)
            return view(*args, **kwargs)

        wrapper.required_scope = scope
        # The same bookkeeping as flask-smorest's Blueprint.doc, which needs a blueprint.
        apidoc = deepcopy(getattr(wrapper, "_apidoc", {}))
        manual = apidoc.setdefault("manual_doc", {})
        manual["security"] = [{"bearerAuth": []}]
        manual.setdefault("responses", {}).update({401: "UNAUTHORIZED", 403: "FORBIDDEN"})
        manual["description"] = (
            manual.get("description", "") + "\n\n"
        ).lstrip() + f"Requires scope `{scope}`."
        wrapper._apidoc = apidoc
        return wrapper

    return decorator
