"""Suggestions to close remediation items: a newer push of the same pipeline and image repository whose
newest scan has none of the item's CVEs.

Only suggested, never done: the item's owner may still be rolling the fix out, and closing someone's
ticket silently is worse than a reminder. Items filed before migration 0009 name no pipeline and get
no suggestion.
"""

from __future__ import annotations

from datetime import datetime
from typing import List, Optional

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from imagetrail.queries.visibility import visible_organizations
from imagetrail.reference import normalize_registry
from imagetrail.auth import Principal
from imagetrail.store.models.cloud import Finding, RemediationItem, VulnerabilitySummary
from imagetrail.store.models.pipeline import ImageReference, Job, Push, Run

MAX_ITEMS = 5000


class CloseSuggestion(BaseModel):
    tracker: str
    organization: str
    project: str
    item_id: int
    item_url: Optional[str] = None
    digest: str  # the image the item was filed for
    cve_ids: List[str]
    newer_digest: str
    newer_reference: str
    newer_pushed_at: Optional[datetime] = None
    newer_scanned_at: datetime
    reason: str


def _pushes(session: Session, pipeline_id: int, image_repository: str):
    """(digest, reference, pushed_at) of the pipeline's pushes to ``registry/repository``, newest first."""
    registry, _, repository = image_repository.partition("/")
    return session.execute(
        select(Push.digest, Push.reference, Push.pushed_at)
        .join(Job, Job.id == Push.job_id)
        .join(Run, Run.id == Job.run_id)
        .join(ImageReference, ImageReference.id == Push.reference_id)
        .where(
            Run.pipeline_id == pipeline_id,
            Push.digest.is_not(None),
            ImageReference.registry_host == normalize_registry(registry),
            ImageReference.repository == repository,
        )
        .order_by(Push.pushed_at.desc(), Push.id.desc())
    ).all()


def close_suggestions(session: Session, principal: Principal) -> List[CloseSuggestion]:
    allowed = visible_organizations(principal)
    items = session.execute(
        select(RemediationItem)
        .where(RemediationItem.pipeline_id.is_not(None), RemediationItem.image_repository.is_not(None))
        .order_by(RemediationItem.created_at, RemediationItem.id)
        .limit(MAX_ITEMS)
    ).scalars()
    suggestions: List[CloseSuggestion] = []
    for item in items:
        if allowed is not None and item.organization.lower() not in allowed:
            continue
        pushes = _pushes(session, item.pipeline_id, item.image_repository)
        filed = [p for p in pushes if p.digest == item.digest]
        if not filed:
            continue
        since = filed[0].pushed_at
        newer = next(
            (
                p
                for p in pushes
                if p.digest != item.digest
                and since is not None
                and p.pushed_at is not None
                and p.pushed_at > since
                and session.get(VulnerabilitySummary, p.digest) is not None
            ),
            None,
        )
        if newer is None:
            continue
        summary = session.get(VulnerabilitySummary, newer.digest)
        remaining = session.execute(
            select(Finding.vulnerability_id)
            .where(Finding.scan_id == summary.scan_id, Finding.vulnerability_id.in_(item.cve_ids))
            .limit(1)
        ).first()
        if remaining is not None:
            continue
        suggestions.append(
            CloseSuggestion(
                tracker=item.tracker,
                organization=item.organization,
                project=item.project,
                item_id=item.work_item_id,
                item_url=item.work_item_url,
                digest=item.digest,
                cve_ids=list(item.cve_ids),
                newer_digest=newer.digest,
                newer_reference=newer.reference,
                newer_pushed_at=newer.pushed_at,
                newer_scanned_at=summary.scanned_at,
                reason=(
                    f"{newer.reference} ({newer.digest[:19]}), pushed later by the same pipeline, was scanned "
                    f"without {', '.join(item.cve_ids[:5])}{' ...' if len(item.cve_ids) > 5 else ''}"
                ),
            )
        )
    return suggestions
