"""Scoped API keys: ``itk_<lookup id>_<secret>``.

The lookup id finds the row; the SHA-256 of the whole key is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from imagetrail.auth import SCOPE_ADMIN, SCOPE_INGEST, SCOPE_READ, SCOPE_REGISTRY, SCOPE_REMEDIATE, Principal
from imagetrail.store.models.auth import ApiKey

KEY_PREFIX = "itk_"
SCOPES = (SCOPE_INGEST, SCOPE_READ, SCOPE_REMEDIATE, SCOPE_REGISTRY, SCOPE_ADMIN)
ALL_ORGANIZATIONS = "*"


class ApiKeyError(ValueError):
    """The key request cannot be honoured (bad scope or organisation)."""


@dataclass(frozen=True)
class NewKey:
    id: str
    key: str  # shown once, never stored


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(session: Session, organization: str, scope: str, description: Optional[str] = None) -> NewKey:
    if scope not in SCOPES:
        raise ApiKeyError(f"--scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    organization = organization.strip().lower()
    if not organization:
        raise ApiKeyError("--org must name an organisation, or be '*' for all organisations")
    key_id = secrets.token_hex(8)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(id=key_id, key_sha256=_digest(key), organization=organization, scope=scope,
                       description=description, created_at=datetime.now(timezone.utc)))
    return NewKey(id=key_id, key=key)


def list_keys(session: Session) -> List[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id: str) -> bool:
    result = session.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                             .values(revoked_at=datetime.now(timezone.utc)))
    return result.rowcount == 1


def principal_for_key(session: Session, key: str) -> Optional[Principal]:
    """The principal behind a presented key, or None when it is unknown, wrong or revoked."""
    _, _, rest = key.partition(KEY_PREFIX)
    key_id, sep, _ = rest.partition("_")
    if not sep or not key_id:
        return None
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_sha256, _digest(key)):
        return None
    scopes = {SCOPE_ADMIN} if row.scope == SCOPE_ADMIN else {row.scope}
    organizations = None if row.organization == ALL_ORGANIZATIONS else frozenset({row.organization})
    return Principal(kind="api-key", subject=f"key:{row.id}", scopes=frozenset(scopes),
                     organizations=organizations)


class KeyCache:
    """Principals of recently verified API keys, for ``ttl`` seconds (0: no caching).

    Saves a database lookup on every request of a busy collector or dashboard; the price is
    that a revoked key keeps working for at most ``ttl`` seconds in each process. Entries are
    keyed by the SHA-256 of the key, so the cache holds no usable credential.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: Dict[str, Tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[Principal]:
        if self.ttl <= 0:
            return None
        entry = self._entries.get(_digest(key))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
            self._entries[_digest(key)] = (time.monotonic() + self.ttl, principal)
