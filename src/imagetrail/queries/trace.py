"""The trace: from an image digest or reference to the pipeline runs that pushed it.

Plain functions over a SQLAlchemy session, used by the API routes and, in-process, by the
web explorer. Every push carries its evidence (which report stated it, when it was
received, which identity sent it) and how each fact is known (``facts``: verified, claimed or
disputed, with the competing values of a disputed fact). Only organisations the principal may
read are shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote

from pydantic import BaseModel
from sqlalchemy import case, or_, select
from sqlalchemy.orm import Session

from imagetrail.queries.trail import OwnerEntry
from imagetrail.reference import DIGEST_RE, InvalidReference, parse_reference
from imagetrail.sanitize import safe_url
from imagetrail.queries.registry_views import ClaimInfo, RegistryEventInfo
from imagetrail.auth import Principal
from imagetrail.facts import DISPUTED
from imagetrail.auth.report_claims import BOUND_KINDS
from imagetrail.auth.evidence import push_evidence
from imagetrail.store.models import pipeline as m
from imagetrail.store.models.evidence import FactStatement

MAX_PUSHES = 500
MAX_LIST = 1000
MAX_COMPETING = 20  # values listed per disputed fact (the first stated): a key holder could state thousands


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


class Stated(BaseModel):
    """One value of a fact, and the credential that stated it."""

    value: str
    evidence: str  # verified | claimed
    credential_kind: str  # azure-devops | github | azure-devops-api | api-key | entra | legacy
    credential_id: str  # key:<id>, the token's subject, the app's id


class FactEvidence(BaseModel):
    evidence: str  # verified | claimed | disputed
    competing: List[Stated] = []  # a disputed fact: every value stated, and who stated it


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
    # Who should fix it, in order, each with its source (cloud/owners.py); the requester until resolved.
    owners: List[OwnerEntry] = []
    evidence: Evidence
    # organization, project, pipeline, run, repository, branch, commit, requester -> how it is known
    facts: Dict[str, FactEvidence] = {}
    # Who reported this push: the collector, and the registry too when it notified the same
    # reference and digest (one push, two sources; imagetrail.queries.registry_trail joins them).
    sources: List[str] = ["collector"]
    registry_events: List[RegistryEventInfo] = []


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
    pushes: List[TrailPush] = []  # one page, newest first
    has_more: bool = False  # older pushes exist: ask again with before=next
    next: Optional[str] = None  # the cursor of the next (older) page
    # Registry side: pushes only a registry reported, and what the images claim (labels, provenance).
    registry_pushes: List[RegistryEventInfo] = []
    claims: List[ClaimInfo] = []


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
    evidence: Dict[str, str] = {}  # fact -> verified | claimed | disputed


def _utc(value: Optional[datetime]) -> Optional[datetime]:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


# -- links ------------------------------------------------------------------------------

def run_link(system: str, server_url: Optional[str], project: str, run_id: str, reported: Optional[str]) -> Optional[str]:
    base = safe_url(server_url)
    if base and system == "azure-devops" and run_id.isdigit():
        return f"{base.rstrip('/')}/{quote(project)}/_build/results?buildId={run_id}"
    if base and system == "github" and run_id.isdigit():
        return f"{base.rstrip('/')}/{project}/actions/runs/{run_id}"
    return safe_url(reported)


def commit_link(system: str, server_url: Optional[str], project: str, repo_uri: Optional[str],
                repo_type: Optional[str], commit: Optional[str]) -> Optional[str]:
    if not commit or not re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
        return None
    kind = (repo_type or "").lower()
    uri = safe_url(repo_uri)
    if system == "github" and safe_url(server_url) and (not uri or kind in ("", "github")):
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
# One statement per page: the pushes matching the filter, newest first, joined with their
# reference, job, run, report, pipeline, project, organisation, repository and requester, as
# plain columns (building ten ORM objects per row cost more than the query). PostgreSQL needs
# ~10 ms to PLAN this join for ~0.3 ms of execution, but the statement text is constant, so
# psycopg prepares it server-side after 5 executions (``prepare_threshold``) and PostgreSQL then
# reuses a generic plan: the planning is paid during a connection's first ~10 trails only
# (benchmarks/results/bench_trace.md).
# Pages are cut by a keyset cursor on (pushed_at, id), never by OFFSET, so page 200 of a busy
# tag costs what page 1 does: the (digest, pushed_at) / (reference_id, pushed_at) indexes lead.

DEFAULT_PAGE = 50


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the (pushed_at, id) of its last (oldest) push."""

    pushed_at: datetime
    push_id: int

    def __str__(self) -> str:
        # "Z" rather than "+00:00": a "+" pasted into a query string would read as a space.
        return f"{self.pushed_at.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')},{self.push_id}"

    @classmethod
    def parse(cls, text: str) -> "Cursor":
        when, _, push_id = text.strip().rpartition(",")
        try:
            pushed_at = datetime.fromisoformat(when.replace("Z", "+00:00"))
            # ids are 64-bit; a time at the edge of the calendar cannot be moved to UTC
            if pushed_at.tzinfo is None or not push_id.isdigit() or len(push_id) > 18:
                raise ValueError(text)
            pushed_at = pushed_at.astimezone(timezone.utc)
        except (ValueError, OverflowError):
            raise TraceQueryError(
                f"before: {text[:100]!r} is not a page cursor; pass the 'next' value of the previous page "
                "(pushed_at,id, e.g. 2024-06-01T10:00:00.000000Z,42)") from None
        return cls(pushed_at, int(push_id))


@dataclass
class Page:
    pushes: List[TrailPush]
    next: Optional[Cursor]


_PUSH_COLUMNS = (
    m.Push.id, m.Push.reference, m.Push.digest, m.Push.pushed_at, m.ImageReference.registry_host,
    m.ImageReference.repository, m.ImageReference.tag, m.Job.external_id.label("job_id"),
    m.Job.name.label("job_name"), m.Job.attempt.label("job_attempt"), m.Job.stage, m.Job.agent_name,
    m.Run.external_id.label("run_id"), m.Run.number, m.Run.attempt.label("run_attempt"), m.Run.reason,
    m.Run.url.label("run_url"), m.Run.branch, m.Run.commit,
    m.Pipeline.external_id.label("pipeline_id"), m.Pipeline.name.label("pipeline_name"),
    m.Project.name.label("project"), m.Organization.name.label("organization"), m.Organization.system,
    m.Organization.server_url, m.Repository.name.label("repository_name"), m.Repository.uri.label("repository_uri"),
    m.Repository.type.label("repository_type"), m.Person.name.label("person_name"),
    m.Person.email.label("person_email"), m.Person.id.label("person_pk"),
    m.Report.id.label("report_id"), m.Report.received_at, m.Report.identity_kind, m.Report.identity_subject,
    m.Report.evidence.label("report_evidence"), m.Run.id.label("run_pk"), m.Run.repository_evidence,
    m.Run.branch_evidence, m.Run.commit_evidence, m.Run.requester_evidence,
)


def _select_pushes(session: Session, principal: Principal, conditions: Sequence[Any], *, limit: int,
                   before: Optional[Cursor] = None, offset: int = 0) -> Page:
    """One page of the newest pushes matching ``conditions`` (on any joined table) that the
    principal may read, as trail entries (``matched_by`` is set by the caller)."""
    query = (
        select(*_PUSH_COLUMNS)
        .join(m.ImageReference, m.Push.reference_id == m.ImageReference.id)
        .join(m.Job, m.Push.job_id == m.Job.id).join(m.Run, m.Job.run_id == m.Run.id)
        .join(m.Pipeline, m.Run.pipeline_id == m.Pipeline.id)
        .join(m.Project, m.Pipeline.project_id == m.Project.id)
        .join(m.Organization, m.Project.organization_id == m.Organization.id)
        .join(m.Report, m.Push.report_id == m.Report.id)
        .outerjoin(m.Repository, m.Run.repository_id == m.Repository.id)
        .outerjoin(m.Person, m.Run.requester_id == m.Person.id)
        .where(*conditions)
    )
    if principal.organizations is not None:
        query = query.where(m.Organization.name.in_(sorted(principal.organizations)))
    if before is not None:
        # "<=" first so the index range scan stops at the cursor; ties broken by id.
        query = query.where(m.Push.pushed_at <= before.pushed_at,
                            or_(m.Push.pushed_at < before.pushed_at, m.Push.id < before.push_id))
    query = query.order_by(m.Push.pushed_at.desc(), m.Push.id.desc()).limit(limit + 1)
    if offset:
        query = query.offset(offset)
    rows = session.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    cursor = Cursor(_utc(last.pushed_at), last.id) if last is not None and last.pushed_at is not None else None
    competing = _competing(session, rows)
    pushes = [_trail_push(row, competing) for row in rows]
    _owners(session, rows, pushes)
    return Page(pushes, cursor)


def _owners(session: Session, rows: Sequence[Any], pushes: List["TrailPush"]) -> None:
    from imagetrail.queries.owners import SOURCE_REQUESTER, OwnerPolicy, stored_owners

    stored = stored_owners(session, [row.run_pk for row in rows])
    for row, push in zip(rows, pushes):
        if row.run_pk in stored:
            push.owners = stored[row.run_pk]
        elif push.requester is not None:
            requester = OwnerEntry(source=SOURCE_REQUESTER, name=push.requester.name, email=push.requester.email,
                                   login=push.requester.name if push.system == "github" else None,
                                   evidence=push.facts["requester"].evidence if "requester" in push.facts else "claimed")
            push.owners = OwnerPolicy().keep([requester])


# -- evidence ---------------------------------------------------------------------------

_SOURCE_VALUES = {"repository": "repository_uri", "branch": "branch", "commit": "commit", "requester": "person_pk"}


def _levels(row: Any) -> Dict[str, str]:
    return push_evidence(row.report_evidence, row.identity_kind,
                         {fact: (getattr(row, column), getattr(row, f"{fact}_evidence"))
                          for fact, column in _SOURCE_VALUES.items()})


def _competing(session: Session, rows: Sequence[Any]) -> Dict[Tuple[int, str], List[Stated]]:
    """Every value stated for the disputed facts of these rows' runs (one query, only when any is)."""
    disputed = {(row.run_pk, fact) for row in rows for fact in _SOURCE_VALUES
                if getattr(row, f"{fact}_evidence") == DISPUTED}
    if not disputed:
        return {}
    found: Dict[Tuple[int, str], List[Stated]] = {}
    statements = session.execute(
        select(FactStatement).where(FactStatement.run_id.in_(sorted({run for run, _ in disputed})),
                                    FactStatement.fact.in_(sorted({fact for _, fact in disputed})))
        # statements of run-bound credentials first: a flood of claims cannot push them off the list
        .order_by(case((FactStatement.credential_kind.in_(sorted(BOUND_KINDS)), 0), else_=1), FactStatement.id)
        .limit(MAX_COMPETING * len(disputed))).scalars()
    for statement in statements:
        listed = found.get((statement.run_id, statement.fact), [])
        if (statement.run_id, statement.fact) in disputed and len(listed) < MAX_COMPETING:
            found.setdefault((statement.run_id, statement.fact), []).append(Stated(
                value=statement.value, evidence=statement.evidence, credential_kind=statement.credential_kind,
                credential_id=statement.credential_id))
    return found


def _trail_push(row: Any, competing: Dict[Tuple[int, str], List[Stated]]) -> TrailPush:
    system, server_url, project = row.system, row.server_url, row.project
    return TrailPush(
        reference=row.reference, registry=row.registry_host, repository=row.repository, tag=row.tag or None,
        digest=row.digest, matched_by="reference", pushed_at=_utc(row.pushed_at), system=system,
        organization=row.organization, project=project,
        pipeline=Named(id=row.pipeline_id, name=row.pipeline_name),
        run=RunInfo(id=row.run_id, number=row.number, attempt=row.run_attempt, reason=row.reason,
                    url=run_link(system, server_url, project, row.run_id, row.run_url)),
        job=JobInfo(id=row.job_id, name=row.job_name, attempt=row.job_attempt, stage=row.stage,
                    agent=row.agent_name),
        source=SourceInfo(
            repository=row.repository_name, uri=row.repository_uri, type=row.repository_type, branch=row.branch,
            commit=row.commit,
            commit_url=commit_link(system, server_url, project, row.repository_uri, row.repository_type, row.commit)),
        requester=(PersonInfo(name=row.person_name, email=row.person_email)
                   if row.person_pk is not None else None),
        evidence=Evidence(report_id=row.report_id, received_at=_utc(row.received_at),
                          identity_kind=row.identity_kind, identity_subject=row.identity_subject),
        facts={fact: FactEvidence(evidence=level, competing=competing.get((row.run_pk, fact), []))
               for fact, level in _levels(row).items()},
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


def _page_bounds(limit: int, before: Optional[str]) -> Optional[Cursor]:
    if not 1 <= limit <= MAX_PUSHES:
        raise TraceQueryError(f"limit: {limit} is out of range; give 1 to {MAX_PUSHES}")
    return Cursor.parse(before) if before else None


def trail_for_digest(session: Session, digest: str, principal: Principal, *, limit: int = DEFAULT_PAGE,
                     before: Optional[str] = None) -> Trail:
    """Pushes of this digest, of an index that lists it, or of a platform manifest it lists:
    the newest ``limit`` (older than the ``before`` cursor)."""
    digest = digest.strip().lower()
    if not DIGEST_RE.match(digest):
        raise TraceQueryError(f"{digest[:100]!r} is not an image digest; write it as sha256:<64 hex digits>")
    cursor = _page_bounds(limit, before)
    related = related_digests(session, digest)
    relation_of: Dict[str, str] = {digest: "digest", **{r.digest: r.relation for r in related}}
    condition = (m.Push.digest == digest if len(relation_of) == 1
                 else m.Push.digest.in_(sorted(relation_of)))
    page = _select_pushes(session, principal, [condition], limit=limit, before=cursor)
    for push in page.pushes:
        push.matched_by = relation_of[push.digest]
    return Trail(query=digest, digest=digest, related=related, pushes=page.pushes,
                 has_more=page.next is not None, next=str(page.next) if page.next else None)


def trail_for_reference(session: Session, reference: str, principal: Principal, *, limit: int = DEFAULT_PAGE,
                        before: Optional[str] = None) -> Trail:
    """The pushes of ``registry/repository:tag``, newest first, ``limit`` per page
    (``@sha256:..`` traces that digest). ``digest`` is the newest pushed digest of the page."""
    try:
        parsed = parse_reference(reference.strip())
    except InvalidReference as exc:
        raise TraceQueryError(f"{exc}; write it as registry/repository:tag or registry/repository@sha256:...") \
            from None
    if parsed.digest:
        trail = trail_for_digest(session, parsed.digest, principal, limit=limit, before=before)
        return trail.model_copy(update={"query": reference})
    cursor = _page_bounds(limit, before)
    # The reference id is a scalar subquery of the same statement, not a join condition: only
    # "reference_id = <one value>" lets PostgreSQL read the (reference_id, pushed_at) index
    # backwards and stop after one page (as a join it sorted all 12,000 pushes of a busy tag).
    reference_id = select(m.ImageReference.id).where(
        m.ImageReference.registry_host == parsed.registry, m.ImageReference.repository == parsed.repository,
        m.ImageReference.tag == (parsed.tag or "latest")).scalar_subquery()
    page = _select_pushes(session, principal, [m.Push.reference_id == reference_id], limit=limit, before=cursor)
    newest = next((p.digest for p in page.pushes if p.digest), None)
    return Trail(query=reference, digest=newest, related=related_digests(session, newest) if newest else [],
                 pushes=page.pushes, has_more=page.next is not None, next=str(page.next) if page.next else None)


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
    page = _select_pushes(session, principal, conditions, limit=max(1, min(limit, MAX_LIST)),
                          offset=max(0, offset))
    result = []
    for push in page.pushes:
        result.append(ImageRow(
            digest=push.digest, reference=push.reference, pushed_at=push.pushed_at, organization=push.organization,
            project=push.project, pipeline=push.pipeline, run=push.run, commit=push.source.commit,
            requester=(push.requester.email or push.requester.name) if push.requester else None,
            evidence={fact: known.evidence for fact, known in push.facts.items()}))
    return result
