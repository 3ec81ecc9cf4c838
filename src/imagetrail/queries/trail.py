"""The push/trail join: a pushed digest up through its job, run, pipeline and project to its organisation.

Every reader of pushes (trace, explorer, web search, coverage, remediation) starts from ``pushes_joined`` and
restricts it with ``imagetrail.queries.visibility.organization_condition``; nothing else spells this join.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set

from pydantic import BaseModel, Field
from sqlalchemy import Select, func, or_, select, union
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.auth.evidence import push_evidence
from imagetrail.facts import VERIFIED
from imagetrail.queries.filters import ExplorerFilters
from imagetrail.queries.visibility import organization_condition
from imagetrail.store.models.pipeline import (
    ImageRelation,
    Job,
    Organization,
    Person,
    Pipeline,
    Project,
    Push,
    Report,
    Repository,
    Run,
)


def pushes_joined(*columns: Any) -> Select:
    """``SELECT columns FROM pushes JOIN jobs JOIN runs JOIN pipelines JOIN projects JOIN organizations``.

    Callers add their own joins (reference, report, repository, requester) and conditions on any of these tables.
    """
    return (
        select(*columns)
        .select_from(Push)
        .join(Job, Job.id == Push.job_id)
        .join(Run, Run.id == Job.run_id)
        .join(Pipeline, Pipeline.id == Run.pipeline_id)
        .join(Project, Project.id == Pipeline.project_id)
        .join(Organization, Organization.id == Project.organization_id)
    )


def with_related(digests: Select) -> Select:
    """The digests of ``digests`` (a one-column select) plus their index / platform-manifest relatives."""
    base = digests.subquery()
    column = base.c[0]
    return union(
        select(column),
        select(ImageRelation.manifest_digest).where(ImageRelation.index_digest.in_(select(column))),
        select(ImageRelation.index_digest).where(ImageRelation.manifest_digest.in_(select(column))),
    )

# A reader of every organisation, for callers that apply no visibility (the server's own jobs).
EVERY_ORGANIZATION = Principal(kind="server", subject="imagetrail", scopes=frozenset(), organizations=None)


class OwnerEntry(BaseModel):
    """One owner of an image, in order, with where it came from (cloud/owners.py)."""

    source: str  # codeowners | commit-author | team-mapping | requester
    name: Optional[str] = None
    email: Optional[str] = None
    login: Optional[str] = None  # GitHub login or @org/team, when the source names one
    detail: Optional[str] = None  # the CODEOWNERS rule, or the team
    evidence: str = "claimed"  # verified | claimed | disputed (imagetrail.facts)

    @property
    def label(self) -> str:
        return self.name or self.login or self.email or "?"


class Trail(BaseModel):
    system: str = "azure-devops"  # azure-devops | github: the CI system of the run (and its tracker)
    organization: str
    project: str
    pipeline: Optional[str] = None
    pipeline_id: Optional[str] = None
    run_id: str
    run_number: Optional[str] = None
    run_url: Optional[str] = None
    repository: Optional[str] = None
    branch: Optional[str] = None
    commit: Optional[str] = None
    owner_name: Optional[str] = None
    owner_email: Optional[str] = None
    pushed_reference: str
    pushed_digest: str
    pushed_at: Optional[datetime] = None
    server_url: Optional[str] = None
    evidence: Dict[str, str] = {}  # fact -> verified | claimed | disputed (imagetrail.facts)
    # Ordered, each with its source; the requester alone until owners are resolved (imagetrail owners).
    owners: List[OwnerEntry] = Field(default_factory=list)
    pipeline_key: Optional[int] = Field(default=None, exclude=True)  # pipelines.id, for the server only
    run_key: Optional[int] = Field(default=None, exclude=True)  # runs.id
    repository_name: Optional[str] = Field(default=None, exclude=True)


def trail_conditions(filters: ExplorerFilters, principal: Principal) -> list:
    """WHERE conditions on ``pushes_joined`` from the trail filters and what ``principal`` may read."""
    conditions = [Push.digest.is_not(None), organization_condition(principal)]
    if filters.org:
        conditions.append(Organization.name == filters.org.lower())
    if filters.project:
        conditions.append(func.lower(Project.name) == filters.project.lower())
    if filters.pipeline:
        conditions.append(or_(Pipeline.name == filters.pipeline, Pipeline.external_id == filters.pipeline))
    if filters.pushed_after:
        conditions.append(Push.pushed_at >= filters.pushed_after)
    if filters.pushed_before:
        conditions.append(Push.pushed_at < filters.pushed_before)
    return conditions



def related_digests(session: Session, digests: Iterable[str]) -> Dict[str, Set[str]]:
    """For each digest: itself, the indexes that list it and the manifests it lists."""
    wanted = sorted(set(digests))
    related: Dict[str, Set[str]] = {d: {d} for d in wanted}
    for chunk in _chunks(wanted, 500):
        rows = session.execute(
            select(ImageRelation.index_digest, ImageRelation.manifest_digest).where(
                or_(ImageRelation.index_digest.in_(chunk), ImageRelation.manifest_digest.in_(chunk))
            )
        ).all()
        for index_digest, manifest_digest in rows:
            if index_digest in related:
                related[index_digest].add(manifest_digest)
            if manifest_digest in related:
                related[manifest_digest].add(index_digest)
    return related


def find_trails(
    session: Session,
    digests: Iterable[str],
    filters: Optional[ExplorerFilters] = None,
    principal: Optional[Principal] = None,
) -> Dict[str, Trail]:
    """The newest matching push for each digest (an exact digest match wins over a related one, then a
    push of a verified run over a claimed one)."""
    related = related_digests(session, digests)
    candidates = sorted(set().union(*related.values())) if related else []
    if not candidates:
        return {}
    conditions = trail_conditions(filters or ExplorerFilters(), principal or EVERY_ORGANIZATION)
    columns = [
        Push.digest,
        Push.reference,
        Push.pushed_at,
        Organization.name,
        Organization.server_url,
        Project.name,
        Pipeline.name,
        Pipeline.external_id,
        Run.external_id,
        Run.number,
        Run.url,
        Run.branch,
        Run.commit,
        Repository.name,
        Repository.uri,
        Person.name,
        Person.email,
        Push.id,
        Report.identity_kind,
        Report.evidence,
        Run.repository_evidence,
        Run.branch_evidence,
        Run.commit_evidence,
        Run.requester_evidence,
        Run.requester_id,
        Run.repository_id,
        Organization.system,
        Pipeline.id,
        Run.id,
    ]
    by_digest: Dict[str, list] = defaultdict(list)
    for chunk in _chunks(candidates, 500):
        query = (
            pushes_joined(*columns)
            .join(Report, Report.id == Push.report_id)
            .outerjoin(Repository, Repository.id == Run.repository_id)
            .outerjoin(Person, Person.id == Run.requester_id)
            .where(Push.digest.in_(chunk), *conditions)
        )
        for row in session.execute(query).all():
            by_digest[row[0]].append(row)
    trails: Dict[str, Trail] = {}
    for digest, family in related.items():
        best = None
        for candidate in family:
            for row in by_digest.get(candidate, ()):
                # A push whose run is verified (sent by the run's own job token) wins over a claimed one:
                # an ingest key cannot make a running image point at another run by reporting it later.
                evidence = _row_evidence(row)
                key = (candidate == digest, evidence["run"] == VERIFIED, row[2] or datetime.min, row[17])
                if best is None or key > best[0]:
                    best = (key, row, evidence)
        if best is not None:
            _, row, evidence = best
            trails[digest] = Trail(
                system=row[26],
                pipeline_key=row[27],
                run_key=row[28],
                repository_name=row[13],
                pushed_digest=row[0],
                pushed_reference=row[1],
                pushed_at=row[2],
                organization=row[3],
                server_url=row[4],
                project=row[5],
                pipeline=row[6],
                pipeline_id=row[7],
                run_id=row[8],
                run_number=row[9],
                run_url=row[10],
                branch=row[11],
                commit=row[12],
                repository=row[14] or row[13],
                owner_name=row[15],
                owner_email=row[16],
                evidence=evidence,
            )
    _attach_owners(session, trails.values())
    return trails


def _attach_owners(session: Session, trails: Iterable[Trail]) -> None:
    """Each trail's resolved owners, else its requester (never a service identity)."""
    from imagetrail.queries.owners import requester_owner, stored_owners

    trails = list(trails)
    stored = stored_owners(session, [t.run_key for t in trails if t.run_key is not None])
    for trail in trails:
        if trail.run_key in stored:
            trail.owners = stored[trail.run_key]
        else:
            requester = requester_owner(trail)
            trail.owners = [requester] if requester else []


def _row_evidence(row: Sequence) -> Dict[str, str]:
    """How each fact of a find_trails row is known (columns: see find_trails)."""
    return push_evidence(row[19], row[18], {"repository": (row[25], row[20]), "branch": (row[11], row[21]),
                                            "commit": (row[12], row[22]), "requester": (row[24], row[23])})


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
