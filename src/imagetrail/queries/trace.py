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
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote

from sqlalchemy import Select, String, bindparam, case, literal, or_, select, tuple_
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.auth.report_claims import BOUND_KINDS
from imagetrail.facts import DISPUTED
from imagetrail.queries.trail import (
    FACT_VALUES,
    RELATION_COLUMNS,
    attach_owners,
    pushes_hidden,
    relate,
    relation_condition,
    row_records,
    trail_select,
    trails_from_records,
)
from imagetrail.queries.visibility import (
    organization_condition,
    organization_parameter_condition,
    organization_parameters,
    reads_every_organization,
)
from imagetrail.reference import DIGEST_RE, InvalidReference, parse_reference
from imagetrail.sanitize import safe_url
from imagetrail.store.db import UTCDateTime, as_utc
from imagetrail.store.models import pipeline as m
from imagetrail.store.models.evidence import FactStatement
from imagetrail.store.models.owners import RunOwner
from imagetrail.store.models.registry import RegistryAttribution, RegistryEvent
from imagetrail.views.trace import (
    FactEvidence,
    ImageRow,
    TraceAnswer,
    TrailPush,
)
from imagetrail.views.trail import RelatedDigest, Stated, Trail

MAX_PUSHES = 500
MAX_LIST = 1000
MAX_COMPETING = 20  # values listed per disputed fact (the first stated): a key holder could state thousands


class TraceQueryError(ValueError):
    """The digest or reference cannot be understood; the message says how to write it."""


# -- links ------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _safe_url(url: Optional[str]) -> Optional[str]:
    """``safe_url``, remembered: a page repeats the same few server and repository URLs (urlsplit each time
    was a tenth of building a page)."""
    return safe_url(url)


@lru_cache(maxsize=4096)
def _path_segment(project: str) -> str:
    return quote(project)  # remembered like _safe_url: a page names the same few projects


def run_link(system: str, server_url: Optional[str], project: str, run_id: str, reported: Optional[str]) -> Optional[str]:
    base = _safe_url(server_url)
    if base and system == "azure-devops" and run_id.isdigit():
        return f"{base.rstrip('/')}/{_path_segment(project)}/_build/results?buildId={run_id}"
    if base and system == "github" and run_id.isdigit():
        return f"{base.rstrip('/')}/{project}/actions/runs/{run_id}"
    return safe_url(reported)


def commit_link(system: str, server_url: Optional[str], project: str, repo_uri: Optional[str],
                repo_type: Optional[str], commit: Optional[str]) -> Optional[str]:
    if not commit or not re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
        return None
    kind = (repo_type or "").lower()
    uri = _safe_url(repo_uri)
    if system == "github" and _safe_url(server_url) and (not uri or kind in ("", "github")):
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
# ~10 ms to PLAN this join for ~0.3 ms of execution, but the trace's statement text is constant
# (built once per shape, ``_pushes_statement``), so psycopg prepares it server-side after 5
# executions (``prepare_threshold``) and PostgreSQL then reuses a generic plan: the planning is
# paid during a connection's first ~10 trails only (benchmarks/results/bench_trace.md).
# Pages are cut by a keyset cursor on (pushed_at, id), never by OFFSET, so page 200 of a busy
# tag costs what page 1 does: the (digest, pushed_at, id) / (reference_id, pushed_at, id) indexes lead.

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


# Whether the run has resolved owners: asked in the push statement itself, so the owners query runs only
# when there are some.
_HAS_OWNERS = select(RunOwner.id).where(RunOwner.run_id == m.Run.id).exists().label("has_owners")


@lru_cache(maxsize=None)
def _relatives_statement() -> Select:
    """The digests related to the ``digest`` parameter and whether the registry side has events / claims for
    any of the family: one statement (a one-row select left-joined to the relations, so the flags come back
    even when nothing is related) instead of three. Built once (see ``_pushes_statement``)."""
    digest = bindparam("digest", type_=String)
    one = select(literal(1).label("one")).subquery("one_row")
    family = m.with_related(select(digest.label("digest")))
    return (
        select(*RELATION_COLUMNS,
               select(RegistryEvent.id).where(RegistryEvent.digest.in_(family)).exists().label("has_events"),
               select(RegistryAttribution.id).where(RegistryAttribution.digest.in_(family)).exists()
               .label("has_claims"))
        .select_from(one)
        .outerjoin(m.ImageRelation, relation_condition([digest]))
    )


def _relatives(session: Session, digest: str) -> Tuple[List[RelatedDigest], Tuple[bool, bool]]:
    rows = session.connection().execute(_relatives_statement(), {"digest": digest}).all()
    return relate([digest], rows)[digest], (bool(rows[0].has_events), bool(rows[0].has_claims))


@dataclass
class _Page:
    trails: List[Trail]
    next: Optional[Cursor]


def _select_pushes(session: Session, principal: Principal, conditions: Sequence[Any], *, limit: int,
                   offset: int = 0) -> _Page:
    """One page of the newest pushes matching ``conditions`` (on any joined table) that the principal may
    read, as trails with their owners and competing values (listings: any filter, built per call)."""
    query = (trail_select(_HAS_OWNERS).where(*conditions, organization_condition(principal))
             .order_by(m.Push.pushed_at.desc(), m.Push.id.desc()).limit(limit + 1))
    if offset:
        query = query.offset(offset)
    return _page(session, session.execute(query).all(), limit)


def _reference_id(registry: Any, repository: Any, tag: Any) -> Any:
    """The id of a reference as a scalar subquery, not a join condition: only "reference_id = <one value>" lets
    PostgreSQL read the (reference_id, pushed_at) index backwards and stop after one page (as a join it sorted
    all 12,000 pushes of a busy tag)."""
    return select(m.ImageReference.id).where(
        m.ImageReference.registry_host == registry, m.ImageReference.repository == repository,
        m.ImageReference.tag == tag).scalar_subquery()


# The trace's own statements are built once per shape and bound per call: building this 11-table select and
# its cache key cost more CPU (~1.7 ms a page) than PostgreSQL spends running it; a statement object reused
# keeps its cache key and compiled form.
@lru_cache(maxsize=None)
def _pushes_statement(match: str, scoped: bool, paged: bool) -> Select:
    """The newest pushes of the ``digest`` parameter (``match="digest"``), of any of ``digests`` ("digests") or
    of the reference ``registry``/``repository``/``tag`` ("reference"), readable by a reader of the
    ``VISIBLE_ORGANIZATIONS`` (``scoped``; a reader of every organisation has no such condition), older than
    the cursor ``before_at``/``before_id`` (``paged``), at most ``rows``."""
    if match == "digest":
        condition = m.Push.digest == bindparam("digest")
    elif match == "digests":
        condition = m.Push.digest.in_(bindparam("digests", expanding=True))
    else:
        condition = m.Push.reference_id == _reference_id(
            bindparam("registry"), bindparam("repository"), bindparam("tag"))
    newest_first = (m.Push.pushed_at.desc(), m.Push.id.desc())
    cursor = tuple_(m.Push.pushed_at, m.Push.id) < tuple_(bindparam("before_at", type_=UTCDateTime()),
                                                         bindparam("before_id"))
    if scoped:
        query = trail_select(_HAS_OWNERS).where(condition, organization_parameter_condition())
        # A row comparison: an index condition on (.., pushed_at, id), so the scan starts at the cursor.
        return (query.where(cursor) if paged else query).order_by(*newest_first).limit(bindparam("rows"))
    # A reader of every organisation: the page's pushes are chosen first, on their own, then joined to their
    # trail. As one join, PostgreSQL estimated a reference's pushes at the average (9) and, for a busy tag's
    # second page, joined all 12,000 and sorted them (520 ms, now 4 ms). For a reader of some organisations
    # the organisation filter needs the joins before the LIMIT, and there the one join measured as fast or
    # faster (16 ms for both forms on a busy tag's second page; 17 against 33 ms on a busy digest).
    page = select(m.Push.id).where(condition, *([cursor] if paged else []))
    page = page.order_by(*newest_first).limit(bindparam("rows")).subquery("page")
    return trail_select(_HAS_OWNERS, page=page).order_by(*newest_first)


def _trace_pushes(session: Session, principal: Principal, match: str, params: Dict[str, Any], *, limit: int,
                  before: Optional[Cursor]) -> _Page:
    """A page of the trace from its statement built once (see ``_pushes_statement``)."""
    statement = _pushes_statement(match, not reads_every_organization(principal), before is not None)
    params = {**params, **organization_parameters(principal), "rows": limit + 1}
    if before is not None:
        params.update(before_at=before.pushed_at, before_id=before.push_id)
    return _page(session, session.connection().execute(statement, params).all(), limit)


def _page(session: Session, rows: Sequence[Any], limit: int) -> _Page:
    """Rows of up to ``limit + 1`` pushes as a page of trails (the extra row says there is a next page)."""
    records = row_records(rows)
    more = len(records) > limit
    records = records[:limit]
    last = records[-1] if more else None
    cursor = (Cursor(as_utc(last["pushed_at"]), last["push_key"])
              if last is not None and last["pushed_at"] is not None else None)
    trails = trails_from_records(records)
    _competing(session, records, trails)
    attach_owners(session, trails, stored=any(record["has_owners"] for record in records))
    return _Page(trails, cursor)


# -- evidence ---------------------------------------------------------------------------

def _competing(session: Session, records: Sequence[Dict[str, Any]], trails: List[Trail]) -> None:
    """Every value stated for the disputed facts of these rows' runs (one query, only when any is)."""
    disputed = {(record["run_key"], fact) for record in records for fact in FACT_VALUES
                if record[f"{fact}_evidence"] == DISPUTED}
    if not disputed:
        return
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
    for trail in trails:
        trail.competing = {fact: found[(trail.run_key, fact)] for fact in FACT_VALUES
                           if (trail.run_key, fact) in found}


def trail_push(trail: Trail, matched_by: str = "reference") -> TrailPush:
    """The trace API's JSON shape of a trail."""
    return TrailPush.model_validate(_push_fields(trail, matched_by))


def _push_fields(trail: Trail, matched_by: str) -> Dict[str, Any]:
    # Plain dicts validated in one call per answer: constructing ~15 nested models per push one by one
    # cost more than the query (``model_construct`` is slower still: it runs in Python).
    system, server_url, project = trail.system, trail.server_url, trail.project
    return dict(
        reference=trail.pushed_reference, registry=trail.registry, repository=trail.image_repository,
        tag=trail.tag, digest=trail.pushed_digest, matched_by=matched_by, pushed_at=trail.pushed_at,
        system=system, organization=trail.organization, project=project,
        pipeline=dict(id=trail.pipeline_id, name=trail.pipeline),
        run=dict(id=trail.run_id, number=trail.run_number, attempt=trail.run_attempt, reason=trail.reason,
                 url=run_link(system, server_url, project, trail.run_id, trail.run_url)),
        job=dict(id=trail.job_id, name=trail.job_name, attempt=trail.job_attempt, stage=trail.stage,
                 agent=trail.agent),
        source=dict(
            repository=trail.repository_name, uri=trail.repository_uri, type=trail.repository_type,
            branch=trail.branch, commit=trail.commit,
            commit_url=commit_link(system, server_url, project, trail.repository_uri, trail.repository_type,
                                   trail.commit)),
        requester=dict(name=trail.owner_name, email=trail.owner_email) if trail.has_requester else None,
        owners=trail.owners,
        evidence=dict(report_id=trail.report_id, received_at=trail.received_at, identity_kind=trail.identity_kind,
                      identity_subject=trail.identity_subject),
        facts={fact: _fact_evidence(level, trail.competing.get(fact)) for fact, level in trail.evidence.items()},
        # given, not defaulted: a mutable default is deep-copied per push
        sources=["collector"], registry_events=[],
    )


def _fact_evidence(level: str, competing: Optional[List[Stated]]) -> Any:
    """A fact's evidence: its competing values when disputed, else the one shared (frozen) entry of its level.
    Eight facts a push: validating a new entry for each was half of validating a trace page."""
    return dict(evidence=level, competing=competing) if competing else _undisputed(level)


@lru_cache(maxsize=16)
def _undisputed(level: str) -> FactEvidence:
    return FactEvidence(evidence=level)


def _page_bounds(limit: int, before: Optional[str]) -> Optional[Cursor]:
    if not 1 <= limit <= MAX_PUSHES:
        raise TraceQueryError(f"limit: {limit} is out of range; give 1 to {MAX_PUSHES}")
    return Cursor.parse(before) if before else None


def _answer(query: str, digest: Optional[str], related: List[RelatedDigest], registry_seen: Optional[Tuple[bool, bool]],
            page: _Page, pushes: List[Dict[str, Any]], hidden: bool) -> TraceAnswer:
    return TraceAnswer.model_validate(dict(
        query=query, digest=digest, related=related, pushes=pushes, has_more=page.next is not None,
        next=str(page.next) if page.next else None, hidden_by_permissions=hidden, registry_pushes=[], claims=[],
        registry_seen=registry_seen))


def trail_for_digest(session: Session, digest: str, principal: Principal, *, limit: int = DEFAULT_PAGE,
                     before: Optional[str] = None) -> TraceAnswer:
    """Pushes of this digest, of an index that lists it, or of a platform manifest it lists:
    the newest ``limit`` (older than the ``before`` cursor)."""
    digest = digest.strip().lower()
    if not DIGEST_RE.match(digest):
        raise TraceQueryError(f"{digest[:100]!r} is not an image digest; write it as sha256:<64 hex digits>")
    cursor = _page_bounds(limit, before)
    related, registry_seen = _relatives(session, digest)
    relation_of: Dict[str, str] = {digest: "digest", **{r.digest: r.relation for r in related}}
    family = sorted(relation_of)
    match, params = ("digest", {"digest": digest}) if len(family) == 1 else ("digests", {"digests": family})
    page = _trace_pushes(session, principal, match, params, limit=limit, before=cursor)
    pushes = [_push_fields(trail, relation_of[trail.pushed_digest]) for trail in page.trails]
    hidden = not pushes and cursor is None and pushes_hidden(session, principal, [m.Push.digest.in_(family)])
    return _answer(digest, digest, related, registry_seen, page, pushes, hidden)


def trail_for_reference(session: Session, reference: str, principal: Principal, *, limit: int = DEFAULT_PAGE,
                        before: Optional[str] = None) -> TraceAnswer:
    """The pushes of ``registry/repository:tag``, newest first, ``limit`` per page
    (``@sha256:..`` traces that digest). ``digest`` is the newest pushed digest of the page."""
    try:
        parsed = parse_reference(reference.strip())
    except InvalidReference as exc:
        raise TraceQueryError(f"{exc}; write it as registry/repository:tag or registry/repository@sha256:...") \
            from None
    if parsed.digest:
        answer = trail_for_digest(session, parsed.digest, principal, limit=limit, before=before)
        answer.query = reference
        return answer
    cursor = _page_bounds(limit, before)
    named = {"registry": parsed.registry, "repository": parsed.repository, "tag": parsed.tag or "latest"}
    page = _trace_pushes(session, principal, "reference", named, limit=limit, before=cursor)
    pushes = [_push_fields(trail, "reference") for trail in page.trails]
    newest = next((t.pushed_digest for t in page.trails if t.pushed_digest), None)
    hidden = not pushes and cursor is None and pushes_hidden(
        session, principal, [m.Push.reference_id == _reference_id(**named)])
    related, registry_seen = _relatives(session, newest) if newest else ([], None)
    return _answer(reference, newest, related, registry_seen, page, pushes, hidden)


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
    for trail in page.trails:
        push = trail_push(trail)
        result.append(ImageRow(
            digest=push.digest, reference=push.reference, pushed_at=push.pushed_at, organization=push.organization,
            project=push.project, pipeline=push.pipeline, run=push.run, commit=push.source.commit,
            requester=(push.requester.email or push.requester.name) if push.requester else None,
            evidence=dict(trail.evidence)))
    return result
