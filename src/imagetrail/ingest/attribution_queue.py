"""The attribution queue: ``registry_artifacts`` rows waiting to be read from their registry.

``store_event_batches`` adds a ``pending`` row per new digest; the worker in
``services.attribution_worker`` claims due rows, reads each image and finishes its row here. A row is
claimed by a conditional update (``pending``/``failed``/expired ``working`` -> ``working``), so several
server processes can share the queue without taking the same row twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, List, Optional, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.ingest.registry_events import now, record_claims
from imagetrail.parsers.attribution import Claim
from imagetrail.store.db import transaction
from imagetrail.store.models.registry import RegistryArtifact


@dataclass(frozen=True)
class QueuedDigest:
    """One claimed row: what to read, and how many attempts it has had (this one included)."""

    row_id: int
    registry: str
    repository: str
    digest: str
    attempts: int


def requeue_not_allowed(sessions: sessionmaker[Session], registries: Iterable[str]) -> None:
    """Rows refused because their registry was not allowed are due again now that it is."""
    with transaction(sessions) as session:
        session.execute(update(RegistryArtifact)
                        .where(RegistryArtifact.status == "not-allowed",
                               RegistryArtifact.registry_host.in_(list(registries)))
                        .values(status="pending", attempts=0, next_attempt_at=now()))


def claim_due(sessions: sessionmaker[Session], *, limit: int, max_attempts: int, lease: timedelta) -> List[int]:
    """Claim up to ``limit`` due rows for ``lease`` (then another process may take them); their ids.

    A ``working`` row is due again once its lease ran out: the process that claimed it stopped."""
    current = now()
    with transaction(sessions) as session:
        candidates = session.execute(
            select(RegistryArtifact.id, RegistryArtifact.status, RegistryArtifact.attempts)
            .where(RegistryArtifact.status.in_(("pending", "failed", "working")),
                   RegistryArtifact.next_attempt_at <= current, RegistryArtifact.attempts < max_attempts)
            .order_by(RegistryArtifact.next_attempt_at).limit(limit)).all()
    claimed = []
    for row_id, status, attempts in candidates:
        # One transaction per row: a row another process claimed meanwhile no longer matches.
        with transaction(sessions) as session:
            changed = session.execute(
                update(RegistryArtifact)
                .where(RegistryArtifact.id == row_id, RegistryArtifact.status == status,
                       RegistryArtifact.attempts == attempts)
                .values(status="working", attempts=attempts + 1, next_attempt_at=current + lease)
            ).rowcount
        if changed:
            claimed.append(row_id)
    return claimed


def queued_digest(sessions: sessionmaker[Session], row_id: int) -> QueuedDigest:
    with sessions() as session:
        artifact = session.get(RegistryArtifact, row_id)
        return QueuedDigest(row_id, artifact.registry_host, artifact.repository, artifact.digest, artifact.attempts)


def finish(sessions: sessionmaker[Session], row_id: int, status: str, detail: Optional[str],
           claims: Sequence[Claim], retry_after: Optional[timedelta] = None) -> None:
    """Keep the claims read and the row's outcome; a ``retry_after`` makes it due again after that long."""
    with transaction(sessions) as session:
        artifact = session.get(RegistryArtifact, row_id)
        if claims:
            record_claims(session, artifact, claims)
        artifact.status, artifact.detail, artifact.checked_at = status, detail, now()
        if retry_after is not None:
            artifact.next_attempt_at = now() + retry_after
