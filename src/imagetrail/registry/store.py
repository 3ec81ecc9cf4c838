"""Storing registry pushes and what they claim; listing the pushes nothing explains (the gaps).

Visibility: a registry event names no organisation. Readers granted every organisation see all
registries; other readers see the registries ``IMAGETRAIL_REGISTRY_ORGS`` maps to one of their
organisations. A registry event matching a collector push the reader may see is shown with it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

from sqlalchemy import and_, exists, false, func, or_, select
from sqlalchemy.exc import DBAPIError, OperationalError
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
