"""API keys: random tokens, stored as their SHA-256, each with a set of scopes."""

import hashlib
import secrets
from datetime import datetime

from sqlmodel import Session, select

from experiments.clock import utcnow
from experiments.errors import InvalidSpec, NotFound
from experiments.storage.tables import ApiKey, PageSession

SCOPES = ("admin", "manage", "assign", "read")
TOKEN_PREFIX = "kairos_"

# What holding a scope also grants: an operator can do everything, and a growth team that
# manages experiments can read them and their results.
IMPLIED_SCOPES = {"admin": set(SCOPES), "manage": {"manage", "read"}}


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(text: str) -> list[str]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise InvalidSpec(
            {"scopes": [f"Scopes are a comma-separated list of {', '.join(SCOPES)}; got '{text}'."]}
        )
    return list(dict.fromkeys(scopes))


def granted_scopes(key: ApiKey) -> set[str]:
    granted: set[str] = set()
    for scope in key.scopes.split(","):
        granted |= IMPLIED_SCOPES.get(scope, {scope})
    return granted


def create_key(
    *, session: Session, name: str, scopes: list[str], now: datetime | None = None
) -> tuple[ApiKey, str]:
    """Store a new key; returns it with its token, which is shown this once and never again."""
    if not name.strip():
        raise InvalidSpec({"name": ["A key needs a name."]})
    secret = secrets.token_urlsafe(32)
    token = TOKEN_PREFIX + secret
    key = ApiKey(
        name=name.strip(),
        token_hash=hash_token(token),
        prefix=token[: len(TOKEN_PREFIX) + 6],
        scopes=",".join(scopes),
        created_at=now or utcnow(),
    )
    session.add(key)
    session.commit()
    return key, token


def authenticate(*, session: Session, token: str) -> ApiKey | None:
    """The active key with this token, or None."""
    key = session.exec(select(ApiKey).where(ApiKey.token_hash == hash_token(token))).first()
    if key is None or key.revoked_at is not None:
        return None
    return key


def list_keys(*, session: Session, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.exec(query))


def revoke_keys(*, session: Session, name_or_id: str, now: datetime | None = None) -> list[ApiKey]:
    """Revoke the active key with this id, or every active key with this name."""
    query = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    if name_or_id.isdigit():
        query = query.where(ApiKey.id == int(name_or_id))
    else:
        query = query.where(ApiKey.name == name_or_id)
    keys = list(session.exec(query))
    if not keys:
        raise NotFound(f"No active key with id or name '{name_or_id}'.")
    for key in keys:
        key.revoked_at = now or utcnow()
        session.add(key)
    session.commit()
    return keys


def has_any_key(*, session: Session) -> bool:
    return session.exec(select(ApiKey.id).limit(1)).first() is not None


def open_page_session(*, session: Session, key: ApiKey, now: datetime | None = None) -> str:
    """Sign `key` in to the pages: a new session, whose id (shown this once, for the cookie)
    is stored as its SHA-256."""
    token = secrets.token_urlsafe(32)
    session.add(
        PageSession(token_hash=hash_token(token), key_id=key.id, created_at=now or utcnow())
    )
    session.commit()
    return token


def page_session_key(*, session: Session, token: str) -> ApiKey | None:
    """The key of a page session still open, unless the key was revoked since."""
    found = session.exec(
        select(ApiKey)
        .join(PageSession, PageSession.key_id == ApiKey.id)
        .where(PageSession.token_hash == hash_token(token), PageSession.ended_at.is_(None))
    ).first()
    if found is None or found.revoked_at is not None:
        return None
    return found


def end_page_session(*, session: Session, token: str, now: datetime | None = None) -> None:
    """Sign a page session out: its cookie opens nothing from now on."""
    found = session.exec(
        select(PageSession).where(PageSession.token_hash == hash_token(token))
    ).first()
    if found is not None and found.ended_at is None:
        found.ended_at = now or utcnow()
        session.add(found)
        session.commit()
