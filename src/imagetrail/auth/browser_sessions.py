"""Server-side web sessions and pending single sign-on flows (tables in ``store/models/web_session.py``).

A browser holds random tokens only (256 bits); rows are keyed by their SHA-256. A session ends
at the first of: sign-out (row deleted), ``web_session_idle_minutes`` without a request,
``web_session_max_hours`` after sign-in, or, for a session opened with an API key, the key's
revocation. Expired rows are deleted whenever someone signs in.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Optional

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.auth import Principal
from imagetrail.settings import Settings
from imagetrail.store.db import transaction
from imagetrail.store.models.auth import ApiKey
from imagetrail.store.models.web_session import BrowserSession, PendingSignIn

ALL_ORGANIZATIONS = "*"
KIND_API_KEY = "api-key"
KIND_SSO = "sso"
# last_seen_at is written at most this often per session: a page view is not a database write.
TOUCH_EVERY = timedelta(seconds=60)
SIGN_IN_LIFETIME = timedelta(minutes=10)
# Sign-ins in progress are created before anyone is authenticated: their number is bounded.
MAX_PENDING_SIGN_INS = 10_000
MAX_FLOW_BYTES = 16 * 1024


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # SQLite returns naive UTC


@dataclass(frozen=True)
class SignedIn:
    principal: Principal
    display_name: str
    csrf_token: str


def open_session(factory: sessionmaker[Session], settings: Settings, principal: Principal, display_name: str,
                 api_key_id: Optional[str] = None) -> str:
    """Store a new session for ``principal``; returns the token for the cookie (shown nowhere else)."""
    token, now = new_token(), _now()
    orgs = principal.organizations
    with transaction(factory) as session:
        _delete_expired(session, settings, now)
        session.add(BrowserSession(
            id=token_id(token), kind=KIND_API_KEY if api_key_id else KIND_SSO, api_key_id=api_key_id,
            subject=principal.subject[:255], display_name=display_name[:255],
            scopes=" ".join(sorted(principal.scopes)),
            organizations=json.dumps(ALL_ORGANIZATIONS if orgs is None else sorted(orgs)),
            csrf_token=secrets.token_hex(32), created_at=now, last_seen_at=now,
            expires_at=now + timedelta(hours=settings.web_session_max_hours),
        ))
    return token


def _delete_expired(session: Session, settings: Settings, now: datetime) -> None:
    idle_since = now - timedelta(minutes=settings.web_session_idle_minutes)
    session.execute(delete(BrowserSession).where(
        or_(BrowserSession.expires_at < now, BrowserSession.last_seen_at < idle_since)))
    session.execute(delete(PendingSignIn).where(PendingSignIn.expires_at < now))


def resolve(factory: sessionmaker[Session], settings: Settings, token: str) -> Optional[SignedIn]:
    """The signed-in person behind a session cookie, or None when it is unknown, expired or revoked."""
    now = _now()
    with transaction(factory) as session:
        row = session.get(BrowserSession, token_id(token))
        if row is None:
            return None
        idle = now - _aware(row.last_seen_at) > timedelta(minutes=settings.web_session_idle_minutes)
        revoked = False
        if row.api_key_id is not None:
            key = session.get(ApiKey, row.api_key_id)
            revoked = key is None or key.revoked_at is not None
        if idle or revoked or _aware(row.expires_at) <= now:
            session.delete(row)
            return None
        if now - _aware(row.last_seen_at) >= TOUCH_EVERY:
            row.last_seen_at = now
        stored = json.loads(row.organizations)
        organizations = None if stored == ALL_ORGANIZATIONS else frozenset(stored)
        principal = Principal(kind=row.kind, subject=row.subject, scopes=frozenset(row.scopes.split()),
                              organizations=organizations, claims={"name": row.display_name})
        return SignedIn(principal, row.display_name, row.csrf_token)


def close_session(factory: sessionmaker[Session], token: str) -> None:
    with transaction(factory) as session:
        session.execute(delete(BrowserSession).where(BrowserSession.id == token_id(token)))


def begin_sign_in(factory: sessionmaker[Session], settings: Settings, browser_token: str,
                  flow: Dict[str, Any], next_url: str) -> None:
    """Keep a provider flow (state, nonce, PKCE verifier) for the browser holding ``browser_token``."""
    data = json.dumps(flow)
    if len(data) > MAX_FLOW_BYTES:
        raise ValueError("the sign-in flow is unexpectedly large")
    now = _now()
    with transaction(factory) as session:
        _delete_expired(session, settings, now)
        session.execute(delete(PendingSignIn).where(PendingSignIn.id == token_id(browser_token)))
        excess = session.scalar(select(func.count()).select_from(PendingSignIn)) - MAX_PENDING_SIGN_INS + 1
        if excess > 0:  # a flood of started sign-ins evicts the oldest instead of locking everyone out
            oldest = select(PendingSignIn.id).order_by(PendingSignIn.created_at).limit(excess)
            session.execute(delete(PendingSignIn).where(PendingSignIn.id.in_(list(session.scalars(oldest)))))
        session.add(PendingSignIn(id=token_id(browser_token), flow=data, next_url=next_url, created_at=now,
                                  expires_at=now + SIGN_IN_LIFETIME))


def take_sign_in(factory: sessionmaker[Session], browser_token: str) -> Optional[PendingSignIn]:
    """The browser's pending flow, removed (single use); None when missing or expired."""
    with transaction(factory) as session:
        row = session.get(PendingSignIn, token_id(browser_token))
        if row is None:
            return None
        session.delete(row)
        return row if _aware(row.expires_at) > _now() else None
