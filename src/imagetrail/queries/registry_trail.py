"""Joining the registry side into a trail.

* A registry event with the same registry, repository, tag and digest as a collector push is that
  push's second source (``TrailPush.sources == ["collector", "registry"]``), never a second push.
* Other registry events of the traced digests are ``TraceAnswer.registry_pushes``.
* A reference no collector pushed but a registry reported (e.g. a ``skopeo copy`` promotion) is
  traced through the digest the registry reported: the same trail as the original reference.
* Claims (labels, provenance) of the traced digests are ``TraceAnswer.claims``, each with the known
  runs it names (by run id) or, failing that, the runs of the commit it names.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.queries.trace import run_link, trail_for_digest
from imagetrail.queries.visibility import organization_condition, registry_condition, visible_registries
from imagetrail.reference import InvalidReference, parse_reference
from imagetrail.settings import Settings
from imagetrail.store.db import as_utc
from imagetrail.store.models import pipeline as m
from imagetrail.store.models.registry import RegistryAttribution, RegistryEvent
from imagetrail.views.registry import ClaimedRun, ClaimInfo, RegistryEventInfo
from imagetrail.views.trace import TraceAnswer

MAX_EVENTS = 200
MAX_CLAIMS = 50
MAX_RUNS = 20


def _event_info(event: RegistryEvent) -> RegistryEventInfo:
    return RegistryEventInfo(
        registry=event.registry_host, repository=event.repository, tag=event.tag or None, digest=event.digest,
        media_type=event.media_type, actor=event.actor, source_addr=event.source_addr, user_agent=event.user_agent,
        pushed_at=as_utc(event.occurred_at), received_at=as_utc(event.received_at), format=event.format,
        event_id=event.event_id)


def _reference_digest(session: Session, reference: str, visible: Optional[Set[str]]) -> Optional[str]:
    try:
        parsed = parse_reference(reference.strip())
    except InvalidReference:
        return None
    if parsed.digest:
        return None
    query = select(RegistryEvent.digest).where(
        RegistryEvent.registry_host == parsed.registry, RegistryEvent.repository == parsed.repository,
        RegistryEvent.tag == (parsed.tag or "latest"))
    condition = registry_condition(RegistryEvent.registry_host, visible)
    if condition is not None:
        query = query.where(condition)
    return session.execute(query.order_by(RegistryEvent.occurred_at.desc(), RegistryEvent.id.desc())
                           .limit(1)).scalar()


def with_registry(session: Session, trail: TraceAnswer, principal: Principal, settings: Settings,
                  reference: Optional[str] = None) -> TraceAnswer:
    """``trail`` with its registry side joined in (see the module docstring)."""
    visible = visible_registries(principal, settings)
    if reference is not None and not trail.pushes and not trail.has_more:
        digest = _reference_digest(session, reference, visible)
        if digest:
            hidden = trail.hidden_by_permissions
            trail = trail_for_digest(session, digest, principal)
            trail.query = reference
            trail.hidden_by_permissions = trail.hidden_by_permissions or hidden
    if trail.digest is None:
        return trail
    digests = sorted({trail.digest, *(r.digest for r in trail.related)})
    # The push statement already asked whether the registry side has anything: no statement when not.
    has_events, has_claims = trail.registry_seen or (True, True)
    events = session.execute(
        select(RegistryEvent).where(RegistryEvent.digest.in_(digests))
        .order_by(RegistryEvent.occurred_at.desc(), RegistryEvent.id.desc()).limit(MAX_EVENTS)
    ).scalars().all() if has_events else []
    by_push: Dict[Tuple[str, str, str, str], List[RegistryEvent]] = {}
    for event in events:
        by_push.setdefault((event.registry_host, event.repository, event.tag, event.digest), []).append(event)
    matched: Set[int] = set()
    for push in trail.pushes:
        found = by_push.get((push.registry, push.repository, push.tag or "", push.digest or ""), [])
        if found:
            # The reader may see this push (its organisation): the registry's word on it comes along.
            push.sources = ["collector", "registry"]
            push.registry_events = [_event_info(e) for e in found]
            matched.update(e.id for e in found)
    trail.registry_pushes = [_event_info(e) for e in events
                             if e.id not in matched and (visible is None or e.registry_host in visible)]
    trail.claims = _claims(session, digests, principal, visible) if has_claims else []
    return trail


def _claims(session: Session, digests: List[str], principal: Principal,
            visible: Optional[Set[str]]) -> List[ClaimInfo]:
    query = select(RegistryAttribution).where(RegistryAttribution.digest.in_(digests))
    condition = registry_condition(RegistryAttribution.registry_host, visible)
    if condition is not None:
        query = query.where(condition)
    claims = []
    for row in session.execute(query.order_by(RegistryAttribution.id).limit(MAX_CLAIMS)).scalars():
        claims.append(ClaimInfo(kind=row.kind, evidence=row.evidence, source=row.source, registry=row.registry_host,
                                repository=row.repository, digest=row.digest, facts=row.facts,
                                recorded_at=as_utc(row.recorded_at),
                                runs=claimed_runs(session, row.facts or {}, principal)))
    return claims


_RUN_COLUMNS = (m.Organization.system, m.Organization.name, m.Organization.server_url, m.Project.name,
                m.Pipeline.external_id, m.Pipeline.name, m.Run.external_id, m.Run.number, m.Run.url, m.Run.commit)


def _normal_uri(uri: Optional[str]) -> str:
    uri = (uri or "").strip().lower().rstrip("/")
    return uri[:-4] if uri.endswith(".git") else uri


def claimed_runs(session: Session, facts: Dict[str, Any], principal: Principal) -> List[ClaimedRun]:
    """Known runs a claim names: by run id (with its organisation, system and project when given),
    else by commit (and repository, when given). Only organisations the principal may read."""
    # Runs, not pushes: a claim may name a run that pushed nothing ImageTrail recorded.
    query = (select(*_RUN_COLUMNS, m.Repository.uri).join(m.Pipeline, m.Run.pipeline_id == m.Pipeline.id)
             .join(m.Project, m.Pipeline.project_id == m.Project.id)
             .join(m.Organization, m.Project.organization_id == m.Organization.id)
             .outerjoin(m.Repository, m.Run.repository_id == m.Repository.id)
             .where(organization_condition(principal)))
    if facts.get("run_id"):
        matched_by = "run"
        query = query.where(m.Run.external_id == str(facts["run_id"]))
        for fact, column in (("system", m.Organization.system), ("organization", m.Organization.name)):
            if facts.get(fact):
                query = query.where(column == str(facts[fact]).lower())
        if facts.get("project"):
            query = query.where(or_(m.Project.name == facts["project"], m.Project.external_id == facts["project"]))
    elif facts.get("commit"):
        matched_by = "commit"
        query = query.where(m.Run.commit == facts["commit"])
    else:
        return []
    runs = []
    wanted_uri = _normal_uri(facts.get("repository_uri"))
    for row in session.execute(query.order_by(m.Run.id.desc()).limit(MAX_RUNS)).all():
        (system, org, server_url, project, pipeline_id, pipeline, run_id, number, url, commit, repo_uri) = row
        if matched_by == "commit" and wanted_uri and repo_uri and _normal_uri(repo_uri) != wanted_uri:
            continue
        runs.append(ClaimedRun(matched_by=matched_by, system=system, organization=org, project=project,
                               pipeline_id=pipeline_id, pipeline=pipeline, run_id=run_id, run_number=number,
                               run_url=run_link(system, server_url, project, run_id, url), commit=commit))
    return runs
