"""Resolve a search text to pages: each reading from ``search.classify`` is looked up.

The SQL is imagetrail.queries.search; every lookup is filtered by what the principal may read: pipeline-side rows by their
organisation, running workloads (which carry no organisation) only for principals granted
every organisation, the rule the explorer applies to untraced workloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional
from urllib.parse import quote, urlencode

from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.queries import search as found_in
from imagetrail.queries.trace import TraceQueryError, list_images
from imagetrail.views.trace import ImageRow
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
    hidden_by_permissions: bool = False  # nothing visible, but matches exist where the reader may not look


HIDDEN_NOTE = " Some matches are hidden by your permissions (organisations you may not read)."


def image_href(digest: str) -> str:
    return "/images/" + quote(digest, safe=":")


def _push_candidates(matches: Iterable[found_in.PushMatch]) -> List[Candidate]:
    """One candidate per digest, newest push first."""
    candidates = []
    for match in matches:
        when = match.pushed_at.strftime("%Y-%m-%d %H:%M") if match.pushed_at else "time unknown"
        candidates.append(Candidate(
            "image",
            f"{match.reference} ({match.digest[:19]}…)",
            image_href(match.digest),
            f"pushed {when} by {match.organization}/{match.project} · {match.pipeline} run {match.run}",
        ))
    return candidates


def _workload_candidates(workloads: Iterable[found_in.WorkloadMatch]) -> List[Candidate]:
    seen: dict[tuple, Candidate] = {}
    for w in workloads:
        key = (w.namespace, w.name, w.digest)
        if key in seen or w.digest is None:
            continue
        seen[key] = Candidate(
            "workload", f"{w.namespace}/{w.name} · {w.container}", image_href(w.digest), f"{w.kind} running {w.image}"
        )
    return list(seen.values())


def _digest_prefix(session: Session, principal: Principal, prefix: str) -> List[Candidate]:
    found = _push_candidates(found_in.pushes(session, principal, found_in.digest_prefix(prefix)))
    known = {c.href for c in found}
    # A platform manifest of a pushed index: the trail page follows the relation.
    for platform in found_in.platforms(session, principal, prefix, MAX_CANDIDATES):
        href = image_href(platform.manifest)
        if href not in known:
            found.append(Candidate("platform manifest", platform.manifest, href,
                                   f"listed by index {platform.index[:19]}…"))
            known.add(href)
    for candidate in _workload_candidates(found_in.workloads_by_digest_prefix(session, principal, prefix)):
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
    found += _workload_candidates(found_in.workloads_by_image(session, principal, reference, name))
    return found


def _normalise_repo_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.lower().endswith(".git"):
        url = url[:-4]
    if "://" in url:
        scheme, rest = url.split("://", 1)
        url = scheme + "://" + rest.split("@", 1)[-1]  # drop user@ from clone URLs
    return url.lower()


def _repository_url(session: Session, principal: Principal, url: str) -> List[Candidate]:
    """Images built from a source repository, matched on its clone URL without scheme, user or .git."""
    return _push_candidates(found_in.pushes(session, principal, found_in.repository_url(_host_and_path(url))))


def _host_and_path(url: str) -> str:
    return _normalise_repo_url(url).split("://", 1)[-1]


def _workload(session: Session, principal: Principal, text: str) -> List[Candidate]:
    namespace, name = text.split("/", 1)
    return _workload_candidates(found_in.workloads_by_name(session, principal, namespace, name))


def _pipeline(session: Session, principal: Principal, text: str) -> List[Candidate]:
    pipelines = found_in.pipelines(session, principal, text, MAX_CANDIDATES)
    if len(pipelines) == 1:  # one pipeline: the images it pushed
        only = pipelines[0]
        rows = list_images(
            session,
            principal,
            organization=only.organization,
            project=only.project,
            pipeline=only.external_id,
            limit=MAX_CANDIDATES * 4,
        )
        return _image_row_candidates(rows)
    return [
        Candidate(
            "pipeline",
            f"{p.organization}/{p.project} · {p.name}",
            "/explorer?" + urlencode({"pipeline": p.name, "project": p.project}),
            "running images built by this pipeline",
        )
        for p in pipelines
    ]


def _hidden(session: Session, principal: Principal, reading: Reading) -> bool:
    """Whether this reading matches pushes (or pipelines) only in organisations the reader may not read."""
    if reading.kind is Kind.DIGEST_PREFIX:
        return found_in.hidden_pushes(session, principal, found_in.digest_prefix(reading.value))
    if reading.kind is Kind.IMAGE_REFERENCE:
        conditions = found_in.image_reference(reading.value)
        return conditions is not None and found_in.hidden_pushes(session, principal, conditions)
    if reading.kind is Kind.REPOSITORY_URL:
        return found_in.hidden_pushes(session, principal, found_in.repository_url(_host_and_path(reading.value)))
    if reading.kind is Kind.PIPELINE:
        return found_in.hidden_pipelines(session, principal, reading.value)
    return False


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
        hidden = any(_hidden(session, principal, reading) for reading in readings)
        return SearchOutcome(None, [], f"Nothing you may read matches {text.strip()!r} as {kinds}."
                             + (HIDDEN_NOTE if hidden else ""), hidden_by_permissions=hidden)
    truncated = len(candidates) > MAX_CANDIDATES
    return SearchOutcome(None, candidates[:MAX_CANDIDATES], "Several matches: choose one.", truncated)
