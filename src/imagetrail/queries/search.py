"""What the web search box finds: pushes by digest prefix or source repository, platform manifests of pushed
indexes, running workloads and pipelines; the SQL behind ``imagetrail.web.lookup`` (which presents it).

Pushes come from ``queries.trail.pushes_joined`` restricted by ``queries.visibility``; running workloads carry
no organisation, so only readers of every organisation see them (the explorer's rule for untraced workloads).
``hidden_pushes`` says whether a search that found nothing would have found pushes of organisations the reader
may not read, and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, List, Optional, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.queries.trail import pushes_hidden, pushes_joined
from imagetrail.queries.visibility import organization_condition, reads_every_organization
from imagetrail.reference import InvalidReference, parse_reference
from imagetrail.store.models.cloud import RunningContainer
from imagetrail.store.models.pipeline import (
    ImageReference,
    ImageRelation,
    Organization,
    Pipeline,
    Project,
    Push,
    Repository,
    Run,
)

MAX_ROWS = 200


@dataclass(frozen=True)
class PushMatch:
    digest: str
    reference: str
    pushed_at: Optional[datetime]
    organization: str
    project: str
    pipeline: str  # name, else id
    run: str  # number, else id


@dataclass(frozen=True)
class PlatformMatch:
    manifest: str
    index: str


@dataclass(frozen=True)
class WorkloadMatch:
    namespace: str
    kind: str
    name: str
    container: str
    image: str
    digest: Optional[str]


@dataclass(frozen=True)
class PipelineMatch:
    organization: str
    project: str
    name: Optional[str]
    external_id: str


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")


# -- conditions of each reading (on pushes_joined) ----------------------------------------------

def digest_prefix(prefix: str) -> List[Any]:
    return [Push.digest.like(like_escape(prefix) + "%", escape="\\")]


def repository_url(host_and_path: str) -> List[Any]:
    """Pushes of runs built from a clone URL ending in ``host_and_path`` (lower case, .git or not)."""
    pattern = "%" + like_escape(host_and_path)
    lowered = func.lower(Repository.uri)
    return [Run.repository_id.in_(select(Repository.id).where(
        or_(lowered.like(pattern, escape="\\"), lowered.like(pattern + ".git", escape="\\"))))]


def image_reference(reference: str) -> Optional[List[Any]]:
    """Pushes of ``registry/repository[:tag]``; None when it is not an image reference."""
    try:
        parsed = parse_reference(reference.strip())
    except InvalidReference:
        return None
    references = select(ImageReference.id).where(ImageReference.registry_host == parsed.registry,
                                                 ImageReference.repository == parsed.repository)
    if parsed.tag:
        references = references.where(ImageReference.tag == parsed.tag)
    return [Push.reference_id.in_(references)]


# -- lookups ---------------------------------------------------------------------------------

def pushes(session: Session, principal: Principal, conditions: Sequence[Any]) -> List[PushMatch]:
    """The newest visible pushes matching ``conditions``, one per digest."""
    rows = session.execute(
        pushes_joined(Push.digest, Push.reference, Push.pushed_at, Organization.name.label("organization"),
                      Project.name.label("project"), Pipeline.name.label("pipeline"),
                      Pipeline.external_id.label("pipeline_id"), Run.number, Run.external_id.label("run_id"))
        .where(Push.digest.is_not(None), organization_condition(principal), *conditions)
        .order_by(Push.pushed_at.desc().nulls_last(), Push.id.desc())
        .limit(MAX_ROWS)
    ).all()
    found: dict[str, PushMatch] = {}
    for row in rows:
        found.setdefault(row.digest, PushMatch(row.digest, row.reference, row.pushed_at, row.organization,
                                               row.project, row.pipeline or row.pipeline_id,
                                               row.number or row.run_id))
    return list(found.values())


def hidden_pushes(session: Session, principal: Principal, conditions: Sequence[Any]) -> bool:
    """Whether pushes matching ``conditions`` exist that ``principal`` may not read (never which)."""
    return pushes_hidden(session, principal, [Push.digest.is_not(None), *conditions])


def platforms(session: Session, principal: Principal, prefix: str, limit: int) -> List[PlatformMatch]:
    """Platform manifests starting with ``prefix`` whose index the principal may see pushed."""
    relations = session.execute(
        select(ImageRelation.manifest_digest, ImageRelation.index_digest)
        .where(ImageRelation.manifest_digest.like(like_escape(prefix) + "%", escape="\\"))
        .limit(limit)
    ).all()
    if not relations:
        return []
    visible = {p.digest for p in pushes(session, principal, [Push.digest.in_({r.index_digest for r in relations})])}
    return [PlatformMatch(r.manifest_digest, r.index_digest) for r in relations if r.index_digest in visible]


def workloads(session: Session, principal: Principal, condition: Any) -> List[WorkloadMatch]:
    if not reads_every_organization(principal):
        return []
    rows = session.execute(
        select(RunningContainer.namespace, RunningContainer.workload_kind, RunningContainer.workload_name,
               RunningContainer.container, RunningContainer.image, RunningContainer.digest)
        .where(condition)
        .order_by(RunningContainer.namespace, RunningContainer.workload_name)
        .limit(MAX_ROWS)
    ).all()
    return [WorkloadMatch(*row) for row in rows]


def workloads_by_digest_prefix(session: Session, principal: Principal, prefix: str) -> List[WorkloadMatch]:
    return workloads(session, principal, RunningContainer.digest.like(like_escape(prefix) + "%", escape="\\"))


def workloads_by_image(session: Session, principal: Principal, reference: str, name: str) -> List[WorkloadMatch]:
    """Workloads running ``reference`` exactly, or any tag of image ``name``."""
    return workloads(session, principal, or_(RunningContainer.image == reference,
                                             RunningContainer.image.like(like_escape(name) + ":%", escape="\\")))


def workloads_by_name(session: Session, principal: Principal, namespace: str, name: str) -> List[WorkloadMatch]:
    return workloads(session, principal, (RunningContainer.namespace == namespace)
                     & or_(RunningContainer.workload_name == name, RunningContainer.pod == name))


def _pipeline_name(text: str) -> Any:
    return func.lower(Pipeline.name).like("%" + like_escape(text.lower()) + "%", escape="\\")


def pipelines(session: Session, principal: Principal, text: str, limit: int) -> List[PipelineMatch]:
    """Pipelines whose name contains ``text`` (any case), in organisations the principal may read."""
    rows = session.execute(
        select(Organization.name, Project.name, Pipeline.name, Pipeline.external_id)
        .select_from(Pipeline)
        .join(Project, Pipeline.project_id == Project.id)
        .join(Organization, Project.organization_id == Organization.id)
        .where(_pipeline_name(text), organization_condition(principal))
        .order_by(Pipeline.name)
        .limit(limit)
    ).all()
    return [PipelineMatch(*row) for row in rows]


def hidden_pipelines(session: Session, principal: Principal, text: str) -> bool:
    if reads_every_organization(principal):
        return False
    return session.execute(select(select(Pipeline.id).where(_pipeline_name(text)).exists())).scalar() is True
