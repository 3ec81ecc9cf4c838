"""The trace: from an image digest or reference to the pipeline runs that pushed it.

Plain functions over a SQLAlchemy session, used by the API routes and, in-process, by the
web explorer. Every push carries its evidence (which report stated it, when it was
received, which identity sent it). Only organisations the principal may read are shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import quote, urlsplit

from pydantic import BaseModel
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

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
#
# The pushes to show are picked from ``pushes`` alone (by the (digest, pushed_at) or
# (reference_id, pushed_at) index, newest first, at most MAX_PUSHES), joining the
# run/pipeline/project/organisation chain only when a filter needs it; those few rows are
# joined with their reference, job, run and report; their pipelines (with project and
# organisation), repositories and requesters come in one small query each. All as plain
# columns: building ten ORM objects per row cost more than the query, and planning one
# eleven-table join cost PostgreSQL ~8 ms, ten times its execution.

_ORG_CHAIN = ((m.Job, m.Push.job_id == m.Job.id), (m.Run, m.Job.run_id == m.Run.id),
              (m.Pipeline, m.Run.pipeline_id == m.Pipeline.id),
              (m.Project, m.Pipeline.project_id == m.Project.id),
              (m.Organization, m.Project.organization_id == m.Organization.id))
_PUSH_COLUMNS = (
    m.Push.reference, m.Push.digest, m.Push.pushed_at, m.ImageReference.registry_host,
    m.ImageReference.repository, m.ImageReference.tag, m.Job.external_id.label("job_id"),
    m.Job.name.label("job_name"), m.Job.attempt.label("job_attempt"), m.Job.stage, m.Job.agent_name,
    m.Run.external_id.label("run_id"), m.Run.number, m.Run.attempt.label("run_attempt"), m.Run.reason,
    m.Run.url.label("run_url"), m.Run.branch, m.Run.commit, m.Run.pipeline_id.label("pipeline_pk"),
    m.Run.repository_id.label("repository_pk"), m.Run.requester_id.label("requester_pk"),
    m.Report.id.label("report_id"), m.Report.received_at, m.Report.identity_kind, m.Report.identity_subject,
)


@dataclass
class _Dimensions:
    """Pipeline (with project and organisation), repository and requester rows by id."""

    pipelines: Dict[int, Any]
    repositories: Dict[int, Any]
    people: Dict[int, Any]


def _dimensions(session: Session, rows: Sequence[Any]) -> _Dimensions:
    pipeline_ids = sorted({row.pipeline_pk for row in rows})
    repository_ids = sorted({row.repository_pk for row in rows if row.repository_pk is not None})
    person_ids = sorted({row.requester_pk for row in rows if row.requester_pk is not None})
    pipelines = {row.id: row for row in session.execute(
        select(m.Pipeline.id, m.Pipeline.external_id, m.Pipeline.name, m.Project.name.label("project"),
               m.Organization.name.label("organization"), m.Organization.system, m.Organization.server_url)
        .join(m.Project, m.Pipeline.project_id == m.Project.id)
        .join(m.Organization, m.Project.organization_id == m.Organization.id)
        .where(m.Pipeline.id.in_(pipeline_ids)))} if pipeline_ids else {}
    repositories = {row.id: row for row in session.execute(
        select(m.Repository.id, m.Repository.name, m.Repository.uri, m.Repository.type)
        .where(m.Repository.id.in_(repository_ids)))} if repository_ids else {}
    people = {row.id: row for row in session.execute(
        select(m.Person.id, m.Person.name, m.Person.email).where(m.Person.id.in_(person_ids)))} if person_ids else {}
    return _Dimensions(pipelines, repositories, people)


def _select_pushes(session: Session, principal: Principal, conditions: Sequence[Any], *, chain: bool = False,
                   by_reference: bool = False, limit: int = MAX_PUSHES, offset: int = 0) -> List[TrailPush]:
    """The newest pushes matching ``conditions`` that the principal may read, as trail entries
    (``matched_by`` is set by the caller).

    ``chain``: the conditions name run/pipeline/project/organisation columns;
    ``by_reference``: they name image_references columns.
    """
    picked = select(m.Push.id.label("id"), m.Push.pushed_at.label("pushed_at"))
    if by_reference:
        picked = picked.join(m.ImageReference, m.Push.reference_id == m.ImageReference.id)
    if chain or principal.organizations is not None:
        for table, on in _ORG_CHAIN:
            picked = picked.join(table, on)
    if principal.organizations is not None:
        picked = picked.where(m.Organization.name.in_(sorted(principal.organizations)))
    picked = (picked.where(*conditions).order_by(m.Push.pushed_at.desc(), m.Push.id.desc())
              .limit(limit).offset(offset).subquery())
    rows = session.execute(
        select(*_PUSH_COLUMNS).select_from(picked).join(m.Push, m.Push.id == picked.c.id)
        .join(m.ImageReference, m.Push.reference_id == m.ImageReference.id)
        .join(m.Job, m.Push.job_id == m.Job.id).join(m.Run, m.Job.run_id == m.Run.id)
        .join(m.Report, m.Push.report_id == m.Report.id)
        .order_by(picked.c.pushed_at.desc(), picked.c.id.desc())
    ).all()
    dimensions = _dimensions(session, rows)
    return [_trail_push(row, dimensions) for row in rows]


def _trail_push(row: Any, dimensions: _Dimensions) -> TrailPush:
    pipeline = dimensions.pipelines[row.pipeline_pk]
    repo = dimensions.repositories.get(row.repository_pk) if row.repository_pk is not None else None
    person = dimensions.people.get(row.requester_pk) if row.requester_pk is not None else None
    system, server_url, project = pipeline.system, pipeline.server_url, pipeline.project
    return TrailPush(
        reference=row.reference, registry=row.registry_host, repository=row.repository, tag=row.tag or None,
        digest=row.digest, matched_by="reference", pushed_at=_utc(row.pushed_at), system=system,
        organization=pipeline.organization, project=project,
        pipeline=Named(id=pipeline.external_id, name=pipeline.name),
        run=RunInfo(id=row.run_id, number=row.number, attempt=row.run_attempt, reason=row.reason,
                    url=run_link(system, server_url, project, row.run_id, row.run_url)),
        job=JobInfo(id=row.job_id, name=row.job_name, attempt=row.job_attempt, stage=row.stage,
                    agent=row.agent_name),
        source=SourceInfo(
            repository=repo.name if repo else None, uri=repo.uri if repo else None,
            type=repo.type if repo else None, branch=row.branch, commit=row.commit,
            commit_url=commit_link(system, server_url, project, repo.uri if repo else None,
                                   repo.type if repo else None, row.commit)),
        requester=PersonInfo(name=person.name, email=person.email) if person else None,
        evidence=Evidence(report_id=row.report_id, received_at=_utc(row.received_at),
                          identity_kind=row.identity_kind, identity_subject=row.identity_subject),
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
    pushes = _select_pushes(session, principal, [m.Push.digest.in_(sorted(relation_of))])
    for push in pushes:
        push.matched_by = relation_of[push.digest]
    return Trail(query=digest, digest=digest, related=related, pushes=pushes)


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
    reference_id = session.execute(select(m.ImageReference.id).where(
        m.ImageReference.registry_host == parsed.registry, m.ImageReference.repository == parsed.repository,
        m.ImageReference.tag == tag)).scalar()
    pushes = _select_pushes(session, principal, [m.Push.reference_id == reference_id]) if reference_id else []
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
    conditions: List[Any] = []
    if repository:
        try:
            parsed = parse_reference(repository.strip())
        except InvalidReference as exc:
            raise TraceQueryError(f"repository: {exc}") from None
        conditions += [m.ImageReference.registry_host == parsed.registry,
                       m.ImageReference.repository == parsed.repository]
        if parsed.tag:
            conditions.append(m.ImageReference.tag == parsed.tag)
    if organization:
        conditions.append(m.Organization.name == organization.strip().lower())
    if project:
        conditions.append(or_(m.Project.name == project, m.Project.external_id == project))
    if pipeline:
        conditions.append(or_(m.Pipeline.external_id == pipeline, m.Pipeline.name == pipeline))
    if run:
        conditions.append(m.Run.external_id == run)
    pushes = _select_pushes(session, principal, conditions,
                            chain=bool(organization or project or pipeline or run), by_reference=bool(repository),
                            limit=max(1, min(limit, MAX_LIST)), offset=max(0, offset))
    result = []
    for push in pushes:
        result.append(ImageRow(
            digest=push.digest, reference=push.reference, pushed_at=push.pushed_at, organization=push.organization,
            project=push.project, pipeline=push.pipeline, run=push.run, commit=push.source.commit,
            requester=(push.requester.email or push.requester.name) if push.requester else None))
    return result
