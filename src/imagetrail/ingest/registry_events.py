"""Storing registry pushes and what labels and provenance claim about them (the write side; the gaps are
read in ``imagetrail.queries.untraced``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, List, Sequence, Tuple, Union

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.parsers.attribution import Claim
from imagetrail.parsers.registry_events import PushEvent
from imagetrail.store.bulk import insert_many
from imagetrail.store.db import transaction
from imagetrail.store.models.registry import RegistryArtifact, RegistryAttribution, RegistryEvent


def now() -> datetime:
    return datetime.now(timezone.utc)


# -- writing ------------------------------------------------------------------------------------

Outcome = Union[Tuple[int, int], BaseException]


def store_event_batches(sessions: sessionmaker[Session],
                        items: Sequence[Tuple[Sequence[PushEvent], str]]) -> List[Outcome]:
    """Group commit (``IngestWriter(store=...)``): the events of many requests in ONE transaction;
    one (stored, duplicates) per request, in order. A data error fails only its own request."""
    try:
        return _store_events(sessions, items)
    except DBAPIError as exc:
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            raise  # the database is unavailable: every request gets 503 and the registry retries
        if len(items) == 1:
            return [exc]
    return [outcome for item in items for outcome in store_event_batches(sessions, [item])]


def _store_events(sessions: sessionmaker[Session], items: Sequence[Tuple[Sequence[PushEvent], str]]) -> List[Outcome]:
    received = now()
    owner: Dict[Tuple[str, str], int] = {}  # (registry, event id) -> the request that first named it
    rows = []
    for n, (pushes, sent_by) in enumerate(items):
        for p in pushes:
            if (p.registry, p.event_id) in owner:
                continue
            owner[(p.registry, p.event_id)] = n
            rows.append(dict(event_id=p.event_id, format=p.format, registry=p.registry, repository=p.repository,
                             tag=p.tag, digest=p.digest, media_type=p.media_type, actor=p.actor,
                             source_addr=p.source_addr, user_agent=p.user_agent, occurred_at=p.occurred_at,
                             received_at=received, sent_by=sent_by[:512]))
    stored_by = [0] * len(items)
    if rows:
        with transaction(sessions) as session:
            conn = session.connection()
            stored = insert_many(conn, RegistryEvent.__table__, rows, skip_conflicts_on=("registry", "event_id"),
                                 returning=("registry", "event_id", "repository", "digest"))
            artifacts = sorted({(r[0], r[2], r[3]) for r in stored})
            if artifacts:
                insert_many(conn, RegistryArtifact.__table__,
                            [dict(registry=r, repository=repo, digest=d, status="pending", attempts=0,
                                  next_attempt_at=received) for r, repo, d in artifacts],
                            skip_conflicts_on=("registry", "repository", "digest"))
        for row in stored:
            stored_by[owner[(row[0], row[1])]] += 1
    return [(stored_by[n], len(pushes) - stored_by[n]) for n, (pushes, _) in enumerate(items)]


def record_claims(session: Session, artifact: RegistryArtifact, claims: Sequence[Claim]) -> int:
    rows = [dict(digest=artifact.digest, registry=artifact.registry_host, repository=artifact.repository, kind=c.kind,
                 evidence=c.evidence, source=c.source[:255], facts=c.facts, run_id=c.run_id, commit=c.commit,
                 recorded_at=now()) for c in claims]
    return len(insert_many(session.connection(), RegistryAttribution.__table__, rows,
                           skip_conflicts_on=("digest", "kind", "source"), returning=("id",)))
