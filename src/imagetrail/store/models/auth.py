"""API keys, stored hashed. Owned by the auth layer.

A key is shown once, when created (``imagetrail keys create``). The database keeps its
public lookup id and the SHA-256 of the whole key: the key carries 256 bits of
randomness, so a fast hash is enough (there is nothing to brute-force) and lookups stay
cheap on the ingest hot path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from imagetrail.store.db import Base, UTCDateTime


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public lookup id, part of the key
    key_sha256: Mapped[str] = mapped_column(String(64))
    organization: Mapped[str] = mapped_column(String(255))  # lower-cased organisation name, or "*" for all
    scope: Mapped[str] = mapped_column(String(16))  # ingest | read | admin
    description: Mapped[Optional[str]] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
