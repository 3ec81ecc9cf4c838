"""Registry side of the map: pushes a registry reported, and what the pushed images say about themselves.

A registry event has no organisation: who may read it is decided by registry (see
``imagetrail.queries.visibility``). Every derived fact (``registry_attributions``) keeps its
evidence in the trust model's three words: ``verified`` / ``claimed`` / ``disputed``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from imagetrail.store.db import Base, UTCDateTime

DIGEST_LEN = 71


class RegistryEvent(Base):
    """One push a registry notified (Distribution, ACR, Event Grid, Harbor) or a sync observed."""

    __tablename__ = "registry_events"
    __table_args__ = (
        UniqueConstraint("registry", "event_id"),  # idempotent: a resent event changes nothing
        Index("ix_registry_events_digest", "digest"),
        Index("ix_registry_events_reference", "registry", "repository", "tag"),
        Index("ix_registry_events_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(32))  # distribution | acr | event-grid | harbor | sync
    # "registry" is reserved on declarative classes, so the attribute is registry_host.
    registry_host: Mapped[str] = mapped_column("registry", String(255))
    repository: Mapped[str] = mapped_column(String(512))
    tag: Mapped[str] = mapped_column(String(128), default="")  # "" when pushed by digest
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    media_type: Mapped[Optional[str]] = mapped_column(String(255))
    actor: Mapped[Optional[str]] = mapped_column(String(255))
    source_addr: Mapped[Optional[str]] = mapped_column(String(255))
    user_agent: Mapped[Optional[str]] = mapped_column(String(1024))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_by: Mapped[str] = mapped_column(String(512))  # the credential that posted it


class RegistryArtifact(Base):
    """A pushed digest waiting for, or done with, attribution (read from the registry off the request path)."""

    __tablename__ = "registry_artifacts"
    __table_args__ = (
        UniqueConstraint("registry", "repository", "digest"),
        Index("ix_registry_artifacts_status", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "registry" is reserved on declarative classes, so the attribute is registry_host.
    registry_host: Mapped[str] = mapped_column("registry", String(255))
    repository: Mapped[str] = mapped_column(String(512))
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | working | done | failed | not-allowed
    detail: Mapped[Optional[str]] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    checked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())


class RegistryAttribution(Base):
    """One fact an image states about its origin: labels, provenance, an attestation."""

    __tablename__ = "registry_attributions"
    __table_args__ = (UniqueConstraint("digest", "kind", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    # "registry" is reserved on declarative classes, so the attribute is registry_host.
    registry_host: Mapped[str] = mapped_column("registry", String(255))
    repository: Mapped[str] = mapped_column(String(512))
    # azure-pipelines-labels | oci-labels | slsa-provenance
    kind: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[str] = mapped_column(String(16))  # verified | claimed | disputed
    source: Mapped[str] = mapped_column(String(255))  # where it was read: "config sha256:..", "attestation sha256:.."
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    run_id: Mapped[Optional[str]] = mapped_column(String(255), index=True)  # a run id the facts name
    commit: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
