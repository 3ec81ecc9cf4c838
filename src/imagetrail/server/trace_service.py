"""The trace: from an image digest or reference to the pipeline runs that pushed it.

Plain functions over a SQLAlchemy session, used by the API routes and, in-process, by the
web explorer. Every push carries its evidence (which report stated it, when it was
received, which identity sent it). Only organisations the principal may read are shown.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Dict, List, Optional
from urllib.parse import quote, urlsplit

from pydantic import BaseModel
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session, aliased

from imagetrail.collector.references import InvalidReference, parse_reference
from imagetrail.server.auth import Principal
from imagetrail.server.models import pipeline as m

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
MAX_PUSHES = 500
MAX_LIST = 1000


class TraceQueryError(ValueError):
    """The digest or reference cannot be understood; the message says how to write it."""


class Named(BaseModel):
    id: Optional[str] = None
    name: Optional[str] = None


class RunInfo(BaseModel):
    id: str
    number: Optional[str] = None
    attempt: int = 1
    reason: Optional[str] = None
    url: Optional[str] = None  # link to the run in Azure DevOps / GitHub


class JobInfo(BaseModel):
    id: str
    name: Optional[str] = None
    attempt: int = 1
    stage: Optional[str] = None
    agent: Optional[str] = None


class SourceInfo(BaseModel):
    repository: Optional[str] = None
    uri: Optional[str] = None
    type: Optional[str] = None
    branch: Optional[str] = None
    commit: Optional[str] = None
    commit_url: Optional[str] = None


class PersonInfo(BaseModel):
    name: Optional[str] = None
    email: Optional[str] = None


class Evidence(BaseModel):
    report_id: str
    received_at: datetime
    identity_kind: str
    identity_subject: str


class TrailPush(BaseModel):
    reference: str
    registry: str
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None
    # how this push relates to the traced digest: "digest" (same), "index" (an index that lists
    # it), "platform" (a platform manifest the traced index lists), "reference" (by reference)
    matched_by: str
    pushed_at: Optional[datetime] = None
    system: str
    organization: str
    project: str
    pipeline: Named
    run: RunInfo
    job: JobInfo
    source: SourceInfo
    requester: Optional[PersonInfo] = None
    evidence: Evidence


class RelatedDigest(BaseModel):
    digest: str
    relation: str  # "index": an index listing the traced digest; "platform": a manifest the traced index lists
    os: Optional[str] = None
    architecture: Optional[str] = None
    variant: Optional[str] = None


class Trail(BaseModel):
    query: str
    digest: Optional[str] = None
    related: List[RelatedDigest] = []
    pushes: List[TrailPush] = []


class ImageRow(BaseModel):
    digest: Optional[str] = None
    reference: str
    pushed_at: Optional[datetime] = None
    organization: str
    project: str
    pipeline: Named
    run: RunInfo
    commit: Optional[str] = None
    requester: Optional[str] = None


def _utc(value: Optional[datetime]) -> Optional[datetime]:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


# -- links ------------------------------------------------------------------------------

def _http(url: Optional[str]) -> Optional[str]:
    """Only http(s) URLs become links: the values come from reports."""
    if not url:
        return None
    return url if urlsplit(url).scheme in ("http", "https") else None


def run_link(system: str, server_url: Optional[str], project: str, run_id: str, reported: Optional[str]) -> Optional[str]:
    base = _http(server_url)
    if base and system == "azure-devops" and run_id.isdigit():
        return f"{base.rstrip('/')}/{quote(project)}/_build/results?buildId={run_id}"
    if base and system == "github" and run_id.isdigit():
        return f"{base.rstrip('/')}/{project}/actions/runs/{run_id}"
    return _http(reported)


def commit_link(system: str, server_url: Optional[str], project: str, repo_uri: Optional[str],
                repo_type: Optional[str], commit: Optional[str]) -> Optional[str]:
    if not commit or not re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
        return None
    kind = (repo_type or "").lower()
    uri = _http(repo_uri)
    if system == "github" and _http(server_url) and (not uri or kind in ("", "github")):
        return f"{server_url.rstrip('/')}/{project}/commit/{commit}"
    if not uri:
        return None
    uri = uri[:-4] if uri.endswith(".git") else uri
    if kind in ("tfsgit", "git", "github", "githubenterprise") or "/_git/" in uri or "github" in uri:
        return f"{uri.rstrip('/')}/commit/{commit}"
    if kind in ("bitbucket",) or "bitbucket.org" in uri:
        return f"{uri.rstrip('/')}/commits/{commit}"
    return None


# -- queries ----------------------------------------------------------------------------

Requester = aliased(m.Person)


def _push_query(principal: Principal) -> Select:
    stmt = (
        select(m.Push, m.ImageReference, m.Job, m.Run, m.Pipeline, m.Project, m.Organization,
               m.Repository, Requester, m.Report)
        .join(m.ImageReference, m.Push.reference_id == m.ImageReference.id)
        .join(m.Job, m.Push.job_id == m.Job.id)
        .join(m.Run, m.Job.run_id == m.Run.id)
        .join(m.Pipeline, m.Run.pipeline_id == m.Pipeline.id)
        .join(m.Project, m.Pipeline.project_id == m.Project.id)
        .join(m.Organization, m.Project.organization_id == m.Organization.id)
        .join(m.Report, m.Push.report_id == m.Report.id)
        .outerjoin(m.Repository, m.Run.repository_id == m.Repository.id)
        .outerjoin(Requester, m.Run.requester_id == Requester.id)
    )
    if principal.organizations is not None:
        stmt = stmt.where(m.Organization.name.in_(sorted(principal.organizations)))
    return stmt


def _trail_push(row, matched_by: str) -> TrailPush:
    push, ref, job, run, pipeline, project, org, repo, person, report = row
    system = org.system
    return TrailPush(
        reference=push.reference, registry=ref.registry_host, repository=ref.repository, tag=ref.tag or None,
        digest=push.digest, matched_by=matched_by, pushed_at=_utc(push.pushed_at), system=system,
        organization=org.name, project=project.name, pipeline=Named(id=pipeline.external_id, name=pipeline.name),
        run=RunInfo(id=run.external_id, number=run.number, attempt=run.attempt, reason=run.reason,
                    url=run_link(system, org.server_url, project.name, run.external_id, run.url)),
        job=JobInfo(id=job.external_id, name=job.name, attempt=job.attempt, stage=job.stage, agent=job.agent_name),
        source=SourceInfo(
            repository=repo.name if repo else None, uri=repo.uri if repo else None, type=repo.type if repo else None,
            branch=run.branch, commit=run.commit,
            commit_url=commit_link(system, org.server_url, project.name, repo.uri if repo else None,
                                   repo.type if repo else None, run.commit)),
        requester=PersonInfo(name=person.name, email=person.email) if person else None,
        evidence=Evidence(report_id=report.id, received_at=_utc(report.received_at), identity_kind=report.identity_kind,
                          identity_subject=report.identity_subject),
    )


def related_digests(session: Session, digest: str) -> List[RelatedDigest]:
    rows = session.execute(
        select(m.ImageRelation).where(or_(m.ImageRelation.index_digest == digest,
                                          m.ImageRelation.manifest_digest == digest))
    ).scalars()
    related: Dict[str, RelatedDigest] = {}
    for rel in rows:
        if rel.manifest_digest == digest:
            related.setdefault(rel.index_digest, RelatedDigest(digest=rel.index_digest, relation="index"))
        else:
            related.setdefault(rel.manifest_digest, RelatedDigest(
                digest=rel.manifest_digest, relation="platform", os=rel.os, architecture=rel.architecture,
                variant=rel.variant))
    return sorted(related.values(), key=lambda r: (r.relation, r.digest))


def trail_for_digest(session: Session, digest: str, principal: Principal) -> Trail:
    """Every push of this digest, of an index that lists it, or of a platform manifest it lists."""
    digest = digest.strip().lower()
    if not DIGEST_RE.match(digest):
        raise TraceQueryError(f"{digest[:100]!r} is not an image digest; write it as sha256:<64 hex digits>")
    related = related_digests(session, digest)
    relation_of: Dict[str, str] = {digest: "digest", **{r.digest: r.relation for r in related}}
    rows = session.execute(
        _push_query(principal).where(m.Push.digest.in_(sorted(relation_of)))
        .order_by(m.Push.pushed_at.desc(), m.Push.id.desc()).limit(MAX_PUSHES)
    ).all()
    return Trail(query=digest, digest=digest, related=related,
                 pushes=[_trail_push(row, relation_of[row[0].digest]) for row in rows])


def trail_for_reference(session: Session, reference: str, principal: Principal) -> Trail:
    """The pushes of ``registry/repository:tag``, newest first (``@sha256:..`` traces that digest)."""
    try:
        parsed = parse_reference(reference.strip())
    except InvalidReference as exc:
        raise TraceQueryError(f"{exc}; write it as registry/repository:tag or registry/repository@sha256:...") \
            from None
    if parsed.digest:
        trail = trail_for_digest(session, parsed.digest, principal)
        return trail.model_copy(update={"query": reference})
    tag = parsed.tag or "latest"
    rows = session.execute(
        _push_query(principal)
        .where(m.ImageReference.registry_host == parsed.registry, m.ImageReference.repository == parsed.repository,
               m.ImageReference.tag == tag)
        .order_by(m.Push.pushed_at.desc(), m.Push.id.desc()).limit(MAX_PUSHES)
    ).all()
    pushes = [_trail_push(row, "reference") for row in rows]
    newest = next((p.digest for p in pushes if p.digest), None)
    return Trail(query=reference, digest=newest, related=related_digests(session, newest) if newest else [],
                 pushes=pushes)


def list_images(session: Session, principal: Principal, *, repository: Optional[str] = None,
                organization: Optional[str] = None, project: Optional[str] = None,
                pipeline: Optional[str] = None, run: Optional[str] = None, limit: int = 100,
                offset: int = 0) -> List[ImageRow]:
    """Pushes filtered by image repository (registry/path), organisation, project, pipeline (id or
    name) and run id, newest first."""
    if not any((repository, organization, project, pipeline, run)):
        raise TraceQueryError("give at least one of repository, organization, project, pipeline or run")
    stmt = _push_query(principal)
    if repository:
        try:
            parsed = parse_reference(repository.strip())
        except InvalidReference as exc:
            raise TraceQueryError(f"repository: {exc}") from None
        stmt = stmt.where(m.ImageReference.registry_host == parsed.registry,
                          m.ImageReference.repository == parsed.repository)
        if parsed.tag:
            stmt = stmt.where(m.ImageReference.tag == parsed.tag)
    if organization:
        stmt = stmt.where(m.Organization.name == organization.strip().lower())
    if project:
        stmt = stmt.where(or_(m.Project.name == project, m.Project.external_id == project))
    if pipeline:
        stmt = stmt.where(or_(m.Pipeline.external_id == pipeline, m.Pipeline.name == pipeline))
    if run:
        stmt = stmt.where(m.Run.external_id == run)
    limit = max(1, min(limit, MAX_LIST))
    rows = session.execute(stmt.order_by(m.Push.pushed_at.desc(), m.Push.id.desc())
                           .limit(limit).offset(max(0, offset))).all()
    result = []
    for row in rows:
        push = _trail_push(row, "reference")
        result.append(ImageRow(
            digest=push.digest, reference=push.reference, pushed_at=push.pushed_at, organization=push.organization,
            project=push.project, pipeline=push.pipeline, run=push.run, commit=push.source.commit,
            requester=(push.requester.email or push.requester.name) if push.requester else None))
    return result
