"""Remediation writes: the record of items filed, so an image and CVE set never gets a second one (the reads are
``imagetrail.queries.remediation``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import List, Optional

from sqlalchemy.orm import sessionmaker

from imagetrail.store.models.cloud import RemediationItem


def record(
    sessions: sessionmaker,
    *,
    tracker: str,
    digest: str,
    cve_hash: str,
    cve_ids: List[str],
    organization: str,
    project: str,
    item_id: int,
    item_url: str,
    item_type: str,
    pipeline_id: Optional[int],
    image_repository: Optional[str],
) -> None:
    """One commit per item: a later failure must not forget items already created."""
    with sessions() as session, session.begin():
        session.add(
            RemediationItem(
                tracker=tracker,
                digest=digest,
                cve_set_hash=cve_hash,
                cve_ids=cve_ids,
                organization=organization,
                project=project,
                work_item_id=item_id,
                work_item_url=item_url,
                work_item_type=item_type,
                created_at=datetime.now(timezone.utc),
                pipeline_id=pipeline_id,
                image_repository=image_repository,
            )
        )
