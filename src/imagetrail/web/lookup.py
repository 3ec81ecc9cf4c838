"""Resolve a search text to pages: each reading from ``search.classify`` is looked up.

Every lookup is filtered by what the principal may read: pipeline-side rows by their
organisation, running workloads (which carry no organisation) only for principals granted
every organisation, the rule the explorer applies to untraced workloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional
from urllib.parse import quote, urlencode

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.store.models.cloud import RunningContainer
from imagetrail.store.models.pipeline import (
    ImageRelation,
    Job,
    Organization,
    Pipeline,
    Project,
    Push,
    Repository,
    Run,
)
from imagetrail.queries.trace import ImageRow, TraceQueryError, list_images
from imagetrail.web.search import Kind, Reading, classify

MAX_CANDIDATES = 50


@dataclass(frozen=True)
class Candidate:
    kind_label: str
    label: str
    href: str
    detail: str = ""


@dataclass
class SearchOutcome:
    redirect: Optional[str]
    candidates: List[Candidate]
    message: str = ""
    truncated: bool = False


def image_href(digest: str) -> str:
    return "/images/" + quote(digest, safe=":")


def _visible_pushes(principal: Principal) -> Select:
    """Pushes joined up to their organisation, restricted to what the principal may read."""
    query = (
        select(Push, Run, Pipeline, Project, Organization)
        .join(Job, Push.job_id == Job.id)
        .join(Run, Job.run_id == Run.id)
        .join(Pipeline, Run.pipeline_id == Pipeline.id)
        .join(Project, Pipeline.project_id == Project.id)
        .join(Organization, Project.organization_id == Organization.id)
        .where(Push.digest.is_not(None))
    )
    if principal.organizations is not None:
        query = query.where(Organization.name.in_(sorted(principal.organizations)))
    return query


def _push_candidates(session: Session, query: Select) -> List[Candidate]:
    """One candidate per digest, newest push first."""
    seen: dict[str, Candidate] = {}
    rows = session.execute(
        query.order_by(Push.pushed_at.desc().nulls_last(), Push.id.desc()).limit(MAX_CANDIDATES * 4)
    )
    for push, run, pipeline, project, org in rows:
        if push.digest in seen:
            continue
        when = push.pushed_at.strftime("%Y-%m-%d %H:%M") if push.pushed_at else "time unknown"
        seen[push.digest] = Candidate(
            "image",
            f"{push.reference} ({push.digest[:19]}…)",
            image_href(push.digest),
            f"pushed {when} by {org.name}/{project.name} · {pipeline.name or pipeline.external_id} "
            f"run {run.number or run.external_id}",
        )
    return list(seen.values())


def _all_organizations(principal: Principal) -> bool:
    return principal.organizations is None


def _workload_candidates(session: Session, principal: Principal, condition) -> List[Candidate]:
    if not _all_organizations(principal):
        return []
    rows = session.execute(
        select(
            RunningContainer.namespace,
            RunningContainer.workload_kind,
            RunningContainer.workload_name,
            RunningContainer.container,
            RunningContainer.image,
            RunningContainer.digest,
        )
        .where(condition)
        .order_by(RunningContainer.namespace, RunningContainer.workload_name)
        .limit(MAX_CANDIDATES * 4)
    ).all()
    seen: dict[tuple, Candidate] = {}
    for namespace, kind, name, container, image, digest in rows:
        key = (namespace, name, digest)
        if key in seen or digest is None:
            continue
        seen[key] = Candidate(
            "workload", f"{namespace}/{name} · {container}", image_href(digest), f"{kind} running {image}"
        )
    return list(seen.values())


def _digest_prefix(session: Session, principal: Principal, prefix: str) -> List[Candidate]:
    pattern = prefix + "%"
    found = _push_candidates(session, _visible_pushes(principal).where(Push.digest.like(pattern)))
    known = {c.href for c in found}
    # A platform manifest of a pushed index: the trail page follows the relation.
    relations = session.execute(
        select(ImageRelation.manifest_digest, ImageRelation.index_digest)
        .where(ImageRelation.manifest_digest.like(pattern))
        .limit(MAX_CANDIDATES)
    ).all()
    visible_indexes = {
        c.href
        for c in _push_candidates(
            session, _visible_pushes(principal).where(Push.digest.in_({r.index_digest for r in relations}))
        )
    }
    for manifest, index in relations:
        href = image_href(manifest)
        if href not in known and image_href(index) in visible_indexes:
            found.append(Candidate("platform manifest", manifest, href, f"listed by index {index[:19]}…"))
            known.add(href)
    for candidate in _workload_candidates(session, principal, RunningContainer.digest.like(pattern)):
        if candidate.href not in known:
            found.append(candidate)
            known.add(candidate.href)
    return found


def _image_row_candidates(rows: Iterable[ImageRow]) -> List[Candidate]:
    """One candidate per digest, in the order given (newest push first)."""
    seen: dict[str, Candidate] = {}
    for row in rows:
        if not row.digest or row.digest in seen:
            continue
        when = row.pushed_at.strftime("%Y-%m-%d %H:%M") if row.pushed_at else "time unknown"
        seen[row.digest] = Candidate(
            "image",
            f"{row.reference} ({row.digest[:19]}…)",
            image_href(row.digest),
            f"pushed {when} by {row.organization}/{row.project} · {row.pipeline.name or row.pipeline.id} "
            f"run {row.run.number or row.run.id}",
        )
    return list(seen.values())


def _image_reference(session: Session, principal: Principal, reference: str) -> List[Candidate]:
    """Pushes of this repository (and tag, when given), via the backend's image listing."""
    if "@sha256:" in reference:
        return [Candidate("image", reference, image_href(reference.split("@", 1)[1]))]
    try:
        rows = list_images(session, principal, repository=reference, limit=MAX_CANDIDATES * 4)
    except TraceQueryError:
        rows = []
    found = _image_row_candidates(rows)
    name = reference.rsplit(":", 1)[0] if ":" in reference.rsplit("/", 1)[-1] else reference
    found += _workload_candidates(
        session,
        principal,
        or_(
            RunningContainer.image == reference,
            RunningContainer.image.like(_like_escape(name) + ":%", escape="\\"),
        ),
    )
    return found


def _normalise_repo_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.lower().endswith(".git"):
        url = url[:-4]
    if "://" in url:
        scheme, rest = url.split("://", 1)
        url = scheme + "://" + rest.split("@", 1)[-1]  # drop user@ from clone URLs
    return url.lower()


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")


def _repository_url(session: Session, principal: Principal, url: str) -> List[Candidate]:
    """Images built from a source repository, matched on its clone URL without scheme, user or .git."""
    host_and_path = _like_escape(_normalise_repo_url(url).split("://", 1)[-1])
    lowered = func.lower(Repository.uri)
    condition = or_(
        lowered.like("%" + host_and_path, escape="\\"),
        lowered.like("%" + host_and_path + ".git", escape="\\"),
    )
    query = _visible_pushes(principal).join(Repository, Run.repository_id == Repository.id).where(condition)
    return _push_candidates(session, query)


def _workload(session: Session, principal: Principal, text: str) -> List[Candidate]:
    namespace, name = text.split("/", 1)
    return _workload_candidates(
        session,
        principal,
        (RunningContainer.namespace == namespace)
        & or_(RunningContainer.workload_name == name, RunningContainer.pod == name),
    )


def _pipeline(session: Session, principal: Principal, text: str) -> List[Candidate]:
    pattern = "%" + _like_escape(text.lower()) + "%"
    query = (
        select(Pipeline, Project, Organization)
        .join(Project, Pipeline.project_id == Project.id)
        .join(Organization, Project.organization_id == Organization.id)
        .where(func.lower(Pipeline.name).like(pattern, escape="\\"))
        .order_by(Pipeline.name)
        .limit(MAX_CANDIDATES)
    )
    if principal.organizations is not None:
        query = query.where(Organization.name.in_(sorted(principal.organizations)))
    pipelines = session.execute(query).all()
    if len(pipelines) == 1:  # one pipeline: the images it pushed
        pipeline, project, org = pipelines[0]
        rows = list_images(
            session,
            principal,
            organization=org.name,
            project=project.name,
            pipeline=pipeline.external_id,
            limit=MAX_CANDIDATES * 4,
        )
        return _image_row_candidates(rows)
    return [
        Candidate(
            "pipeline",
            f"{org.name}/{project.name} · {pipeline.name}",
            "/explorer?" + urlencode({"pipeline": pipeline.name, "project": project.name}),
            "running images built by this pipeline",
        )
        for pipeline, project, org in pipelines
    ]


def _lookup(session: Session, principal: Principal, reading: Reading) -> List[Candidate]:
    if reading.kind is Kind.DIGEST_PREFIX:
        return _digest_prefix(session, principal, reading.value)
    if reading.kind is Kind.IMAGE_REFERENCE:
        return _image_reference(session, principal, reading.value)
    if reading.kind is Kind.REPOSITORY_URL:
        return _repository_url(session, principal, reading.value)
    if reading.kind is Kind.WORKLOAD:
        return _workload(session, principal, reading.value)
    if reading.kind is Kind.PIPELINE:
        return _pipeline(session, principal, reading.value)
    return []


def _dedupe(candidates: Iterable[Candidate]) -> List[Candidate]:
    seen: dict[tuple, Candidate] = {}
    for candidate in candidates:
        seen.setdefault((candidate.kind_label, candidate.href, candidate.label), candidate)
    return list(seen.values())


def resolve(session: Session, principal: Principal, text: str) -> SearchOutcome:
    readings = classify(text)
    if not readings:
        return SearchOutcome(
            None,
            [],
            "Type a digest, an image reference, a repository URL, a pipeline, "
            "a CVE id or a workload (namespace/name).",
        )
    first = readings[0]
    if first.kind is Kind.DIGEST:
        return SearchOutcome(image_href(first.value), [])
    if first.kind is Kind.CVE:
        return SearchOutcome("/explorer?" + urlencode({"cve": first.value}), [])
    candidates = _dedupe(c for reading in readings for c in _lookup(session, principal, reading))
    hrefs = {c.href for c in candidates}
    if len(hrefs) == 1:
        return SearchOutcome(candidates[0].href, candidates)
    if not candidates:
        kinds = " or ".join(r.kind.value.replace("-", " ") for r in readings)
        return SearchOutcome(None, [], f"Nothing you may read matches {text.strip()!r} as {kinds}.")
    truncated = len(candidates) > MAX_CANDIDATES
    return SearchOutcome(None, candidates[:MAX_CANDIDATES], "Several matches: choose one.", truncated)
