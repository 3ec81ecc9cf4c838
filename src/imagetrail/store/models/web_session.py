"""Web explorer sign-in state, kept server-side. Owned by the web layer (``web/session.py``).

The browser holds only random tokens; these tables keep their SHA-256, so a copy of the
database holds no usable session. ``web_sessions``: signed-in people (through an API key or
single sign-on). ``web_sign_ins``: single sign-on flows between the redirect to the provider
and its callback (state, nonce, PKCE verifier), single use and short-lived.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from imagetrail.store.db import Base, UTCDateTime


class BrowserSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the cookie's session token
    kind: Mapped[str] = mapped_column(String(16))  # api-key | sso
    api_key_id: Mapped[Optional[str]] = mapped_column(String(32))  # api-key: revoking the key ends the session
    subject: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[str] = mapped_column(String(128))  # space-separated
    organizations: Mapped[str] = mapped_column(Text)  # JSON: lower-cased names, or "*" for all
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)  # absolute limit


class PendingSignIn(Base):
    __tablename__ = "web_sign_ins"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the browser's sign-in token
    flow: Mapped[str] = mapped_column(Text)  # JSON: state, nonce, PKCE verifier, redirect URI
    next_url: Mapped[str] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
