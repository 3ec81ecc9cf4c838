"""Fill ``TrailFacts`` for one digest: pushes (the backend's trace service), workloads, scans (the SQL is in
``imagetrail.queries``; this module presents it).

Visibility follows the API: pushes of organisations the principal is granted; the
workloads running the image when the principal may see the image (or every organisation).
"""

from __future__ import annotations

from typing import List, Optional, Set

from sqlalchemy.orm import Session

from imagetrail import severity as sev
from imagetrail.auth import Principal
from imagetrail.queries.image_page import newest_scan, running_workloads
from imagetrail.queries.registry_trail import with_registry
from imagetrail.queries.trace import trail_for_digest
from imagetrail.queries.visibility import reads_every_organization
from imagetrail.settings import Settings
from imagetrail.views.trace import TraceAnswer, TrailPush
from imagetrail.web.trail_view import (
    PushFact,
    RelatedDigest,
    TrailFacts,
    VulnerabilityFact,
    WorkloadFact,
)


def _workloads(session: Session, digests: Set[str]) -> List[WorkloadFact]:
    seen: dict[tuple, WorkloadFact] = {}
    for w in running_workloads(session, digests):
        key = (w.cluster, w.namespace, w.kind, w.name)
        exposure = [e.get("reason", "") + (f" · {e['address']}" if e.get("address") else "") for e in w.exposure]
        if key not in seen:
            seen[key] = WorkloadFact(w.cluster, w.namespace, w.kind, w.name, w.container, w.digest, w.exposed,
                                     exposure)
    return list(seen.values())


def _vulnerabilities(session: Session, digests: Set[str], digest: str) -> Optional[VulnerabilityFact]:
    scan = newest_scan(session, digests, digest)
    if scan is None:
        return None
    return VulnerabilityFact(scan.critical, scan.high, scan.medium, scan.low, scan.top, scan.scanner,
                             scan.scanned_at)


def _push_fact(push: TrailPush) -> PushFact:
    return PushFact(
        reference=push.reference,
        digest=push.digest or "",
        pushed_at=push.pushed_at,
        organization=push.organization,
        project=push.project,
        pipeline=push.pipeline.name or push.pipeline.id or "pipeline",
        run_id=push.run.id,
        run_number=push.run.number,
        run_url=push.run.url,
        job=push.job.name or push.job.id,
        repository=push.source.repository,
        repository_url=push.source.uri,
        branch=push.source.branch,
        commit=push.source.commit,
        commit_url=push.source.commit_url,
        # The first owner (cloud/owners.py: CODEOWNERS, commit author, team, requester), else the requester.
        owner_name=(push.owners[0].name or push.owners[0].login) if push.owners
        else (push.requester.name if push.requester else None),
        owner_email=push.owners[0].email if push.owners else (push.requester.email if push.requester else None),
        owner_source=push.owners[0].source if push.owners else None,
        report_id=push.evidence.report_id,
        received_at=push.evidence.received_at,
        identity_kind=push.evidence.identity_kind,
        facts={fact: known.evidence for fact, known in push.facts.items()},
        competing={fact: [f"{s.value} ({s.evidence}, {s.credential_kind} {s.credential_id})" for s in known.competing]
                   for fact, known in push.facts.items() if known.competing},
        registry_events=list(push.registry_events),
    )


def _related(trail: TraceAnswer) -> List[RelatedDigest]:
    return [
        RelatedDigest(
            r.digest, r.relation, "/".join(p for p in (r.os, r.architecture, r.variant) if p) or None
        )
        for r in trail.related
    ]


def load(session: Session, principal: Principal, digest: str, settings: Optional[Settings] = None) -> TrailFacts:
    trail = trail_for_digest(session, digest, principal)
    if settings is not None:
        trail = with_registry(session, trail, principal, settings)
    facts = TrailFacts(digest=digest, related=_related(trail), registry_pushes=trail.registry_pushes,
                       claims=trail.claims, hidden_by_permissions=trail.hidden_by_permissions)
    facts.pushes = [_push_fact(push) for push in trail.pushes]
    facts.more_pushes = trail.has_more
    facts.references = sorted(
        {p.reference for p in facts.pushes if p.digest == digest} or {p.reference for p in facts.pushes}
    )
    family = {digest, *(r.digest for r in trail.related)}
    if facts.pushes or reads_every_organization(principal):
        facts.workloads = _workloads(session, family)
        facts.vulnerabilities = _vulnerabilities(session, family, digest)
    if facts.vulnerabilities and facts.vulnerabilities.top:
        for item in facts.vulnerabilities.top:
            item.setdefault("severity", sev.NAMES.get(sev.rank(item.get("severity")), "unknown"))
    return facts
