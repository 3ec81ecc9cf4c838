"""Storing registry pushes and what they claim; listing the pushes nothing explains (the gaps).

Visibility: a registry event names no organisation. Readers granted every organisation see all
registries; other readers see the registries ``IMAGETRAIL_REGISTRY_ORGS`` maps to one of their
organisations. A registry event matching a collector push the reader may see is shown with it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import List, Optional, Sequence, Set, Tuple

from sqlalchemy import and_, exists, false, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.registry.attribution import Claim
from imagetrail.registry.events import PushEvent
from imagetrail.registry.views import Count, UntracedPage, UntracedPush
from imagetrail.server.auth import Principal
from imagetrail.server.bulk import insert_many
from imagetrail.server.db import transaction
from imagetrail.server.models.pipeline import ImageRelation, Push
from imagetrail.server.models.registry import RegistryArtifact, RegistryAttribution, RegistryEvent
from imagetrail.server.settings import Settings

MAX_PAGE_SIZE = 500


def now() -> datetime:
    return datetime.now(timezone.utc)


def visible_registries(principal: Principal, settings: Settings) -> Optional[Set[str]]:
    """Registries whose pushes ``principal`` may read; None means every registry."""
    if principal.organizations is None:
        return None
    return {host for host, orgs in settings.registry_organizations.items()
            if "*" in orgs or principal.organizations.intersection(orgs)}


def registry_condition(column, visible: Optional[Set[str]]):
    if visible is None:
        return None
    return column.in_(sorted(visible)) if visible else false()


# -- writing ------------------------------------------------------------------------------------

def record_events(sessions: sessionmaker[Session], pushes: Sequence[PushEvent], sent_by: str) -> Tuple[int, int]:
    """Store the pushes (a resent event id is skipped) and queue each new digest for attribution.
    One transaction: all of them or none. Returns (stored, duplicates)."""
    if not pushes:
        return 0, 0
    received = now()
    unique = {(p.registry, p.event_id): p for p in pushes}
    rows = [dict(event_id=p.event_id, format=p.format, registry=p.registry, repository=p.repository, tag=p.tag,
                 digest=p.digest, media_type=p.media_type, actor=p.actor, source_addr=p.source_addr,
                 user_agent=p.user_agent, occurred_at=p.occurred_at, received_at=received, sent_by=sent_by[:512])
            for p in unique.values()]
    artifacts = {(p.registry, p.repository, p.digest) for p in unique.values()}
    with transaction(sessions) as session:
        conn = session.connection()
        stored = insert_many(conn, RegistryEvent.__table__, rows, skip_conflicts_on=("registry", "event_id"),
                             returning=("id",))
        if stored:
            insert_many(conn, RegistryArtifact.__table__,
                        [dict(registry=r, repository=repo, digest=d, status="pending", attempts=0,
                              next_attempt_at=received) for r, repo, d in sorted(artifacts)],
                        skip_conflicts_on=("registry", "repository", "digest"))
    return len(stored), len(pushes) - len(stored)


def record_claims(session: Session, artifact: RegistryArtifact, claims: Sequence[Claim]) -> int:
    rows = [dict(digest=artifact.digest, registry=artifact.registry_host, repository=artifact.repository, kind=c.kind,
                 evidence=c.evidence, source=c.source[:255], facts=c.facts, run_id=c.run_id, commit=c.commit,
                 recorded_at=now()) for c in claims]
    return len(insert_many(session.connection(), RegistryAttribution.__table__, rows,
                           skip_conflicts_on=("digest", "kind", "source"), returning=("id",)))


# -- gaps ---------------------------------------------------------------------------------------

def _traced(digest_column):
    """The digest (or an index / platform manifest related to it) has a collector push or a claim."""
    pushed = exists().where(Push.digest == digest_column)
    via_index = exists().where(ImageRelation.manifest_digest == digest_column,
                               exists().where(Push.digest == ImageRelation.index_digest))
    via_platform = exists().where(ImageRelation.index_digest == digest_column,
                                  exists().where(Push.digest == ImageRelation.manifest_digest))
    claimed = exists().where(RegistryAttribution.digest == digest_column)
    return or_(pushed, via_index, via_platform, claimed)


def untraced_digests():
    """Digests registries reported pushed that no collector push, label or provenance explains (a subquery)."""
    return select(RegistryEvent.digest).where(~_traced(RegistryEvent.digest))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def untraced_pushes(session: Session, principal: Principal, settings: Settings, *, registry: Optional[str] = None,
                    actor: Optional[str] = None, page: int = 1, page_size: int = 50) -> UntracedPage:
    """The newest event of each (registry, repository, tag, digest) whose digest no collector report,
    label or provenance explains, with counts per registry and per actor."""
    newest = select(func.max(RegistryEvent.id)).group_by(
        RegistryEvent.registry_host, RegistryEvent.repository, RegistryEvent.tag, RegistryEvent.digest)
    conditions = [RegistryEvent.id.in_(newest), ~_traced(RegistryEvent.digest)]
    visible = registry_condition(RegistryEvent.registry_host, visible_registries(principal, settings))
    if visible is not None:
        conditions.append(visible)
    if registry:
        conditions.append(RegistryEvent.registry_host == registry.lower())
    if actor:
        conditions.append(RegistryEvent.actor == actor)
    total = session.execute(select(func.count()).select_from(RegistryEvent).where(*conditions)).scalar_one()
    rows = session.execute(
        select(RegistryEvent, RegistryArtifact.status, RegistryArtifact.detail)
        .outerjoin(RegistryArtifact, and_(RegistryArtifact.registry_host == RegistryEvent.registry_host,
                                          RegistryArtifact.repository == RegistryEvent.repository,
                                          RegistryArtifact.digest == RegistryEvent.digest))
        .where(*conditions).order_by(RegistryEvent.occurred_at.desc(), RegistryEvent.id.desc())
        .limit(page_size).offset((page - 1) * page_size)).all()

    def counts(column) -> List[Count]:
        found = session.execute(select(column, func.count()).where(*conditions).group_by(column)
                                .order_by(func.count().desc(), column).limit(100)).all()
        return [Count(name=name, pushes=n) for name, n in found]

    return UntracedPage(
        pushes=[UntracedPush(registry=e.registry_host, repository=e.repository, tag=e.tag or None, digest=e.digest,
                             actor=e.actor, source_addr=e.source_addr, user_agent=e.user_agent,
                             pushed_at=_utc(e.occurred_at), attribution=status or "pending", detail=detail)
                for e, status, detail in rows],
        total=total, page=page, page_size=page_size,
        by_registry=counts(RegistryEvent.registry_host), by_actor=counts(RegistryEvent.actor))
