"""Suggestions to close remediation items: a newer push of the same pipeline and image repository whose
newest scan has none of the item's CVEs.

Only suggested, never done: the item's owner may still be rolling the fix out, and closing someone's
ticket silently is worse than a reminder. Items filed before migration 0009 name no pipeline and get
no suggestion.
"""

from __future__ import annotations

from typing import List

from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.queries import remediation as reads
from imagetrail.views.remediation import CloseSuggestion


def close_suggestions(session: Session, principal: Principal) -> List[CloseSuggestion]:
    suggestions: List[CloseSuggestion] = []
    for item in reads.items_with_pipeline(session, principal):
        pushes = reads.pipeline_pushes(session, principal, item.pipeline_id, item.image_repository)
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
                and reads.scan_summary(session, p.digest) is not None
            ),
            None,
        )
        if newer is None:
            continue
        summary = reads.scan_summary(session, newer.digest)
        if reads.scan_has_any(session, summary.scan_id, item.cve_ids):
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
