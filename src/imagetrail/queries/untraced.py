"""The pushes nothing explains: registry events whose digest no collector report, label or provenance traces.

A registry event matching a collector push the reader may see is shown with that push instead.
"""

from __future__ import annotations

from typing import List, Optional

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.queries.visibility import registry_condition, visible_registries
from imagetrail.settings import Settings
from imagetrail.store.db import as_utc
from imagetrail.store.models.pipeline import ImageRelation, Push
from imagetrail.store.models.registry import RegistryArtifact, RegistryAttribution, RegistryEvent
from imagetrail.views.registry import Count, UntracedPage, UntracedPush

MAX_PAGE_SIZE = 500


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
                             pushed_at=as_utc(e.occurred_at), attribution=status or "pending", detail=detail)
                for e, status, detail in rows],
        total=total, page=page, page_size=page_size,
        by_registry=counts(RegistryEvent.registry_host), by_actor=counts(RegistryEvent.actor))
