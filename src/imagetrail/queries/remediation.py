"""The reads of remediation (``imagetrail.services.remediation*``): an image's findings, filed items, and a
pipeline's later pushes of the same image repository (for close suggestions).

Pushes come through ``queries.trail.pushes_joined`` and ``queries.visibility``; items by the organisation
they were filed for.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from imagetrail import severity as sev
from imagetrail.auth import Principal
from imagetrail.queries.trail import pushes_joined
from imagetrail.queries.visibility import organization_condition
from imagetrail.reference import normalize_registry
from imagetrail.store.models.cloud import Finding, RemediationItem, VulnerabilitySummary
from imagetrail.store.models.pipeline import ImageReference, Pipeline, Push
from imagetrail.views.filters import ExplorerFilters

MAX_ITEMS = 5000


def findings(session: Session, digest: str, filters: ExplorerFilters) -> List[Finding]:
    """The findings at ``filters.min_severity`` or above in the image's newest scan (``cve`` narrows)."""
    latest = session.get(VulnerabilitySummary, digest)
    if latest is None:
        return []
    query = select(Finding).where(
        Finding.scan_id == latest.scan_id, Finding.severity >= sev.parse_filter(filters.min_severity)
    )
    if filters.fix_available:
        query = query.where(Finding.fixed_version.is_not(None))
    if filters.cve:
        query = query.where(Finding.vulnerability_id == filters.cve)
    return list(session.execute(query.order_by(Finding.severity.desc(), Finding.vulnerability_id)).scalars())


def items_with_pipeline(session: Session, principal: Principal) -> Sequence[RemediationItem]:
    """Filed items that name their pipeline and image repository, oldest first, of readable organisations."""
    return session.execute(
        select(RemediationItem)
        .where(RemediationItem.pipeline_id.is_not(None), RemediationItem.image_repository.is_not(None),
               organization_condition(principal, func.lower(RemediationItem.organization)))
        .order_by(RemediationItem.created_at, RemediationItem.id)
        .limit(MAX_ITEMS)
    ).scalars().all()


def pipeline_pushes(session: Session, principal: Principal, pipeline_key: int, image_repository: str) -> List[Any]:
    """(digest, reference, pushed_at) of the pipeline's pushes to ``registry/repository``, newest first."""
    registry, _, repository = image_repository.partition("/")
    return session.execute(
        pushes_joined(Push.digest, Push.reference, Push.pushed_at)
        .join(ImageReference, ImageReference.id == Push.reference_id)
        .where(
            Pipeline.id == pipeline_key,
            Push.digest.is_not(None),
            ImageReference.registry_host == normalize_registry(registry),
            ImageReference.repository == repository,
            organization_condition(principal),
        )
        .order_by(Push.pushed_at.desc(), Push.id.desc())
    ).all()


def scan_summary(session: Session, digest: str) -> Optional[VulnerabilitySummary]:
    """The newest scan summary of ``digest``."""
    return session.get(VulnerabilitySummary, digest)


def scan_has_any(session: Session, scan_id: int, vulnerability_ids: Sequence[str]) -> bool:
    return session.execute(
        select(Finding.vulnerability_id)
        .where(Finding.scan_id == scan_id, Finding.vulnerability_id.in_(list(vulnerability_ids)))
        .limit(1)
    ).first() is not None


def filed_item(session: Session, digest: str, cve_hash: str) -> Optional[RemediationItem]:
    """The item filed for this image and CVE set, if any."""
    return session.execute(
        select(RemediationItem).where(RemediationItem.digest == digest, RemediationItem.cve_set_hash == cve_hash)
    ).scalar_one_or_none()


def newest_item(session: Session, digest: str) -> Optional[RemediationItem]:
    """The newest item filed for this image (with any CVE set)."""
    return session.execute(
        select(RemediationItem)
        .where(RemediationItem.digest == digest)
        .order_by(RemediationItem.created_at.desc(), RemediationItem.id.desc())
        .limit(1)
    ).scalar_one_or_none()
