"""The push/trail join and the one model of "a push and its trail".

Every reader of pushes (trace, explorer, web search, coverage, remediation) starts from ``pushes_joined`` and
restricts it with ``imagetrail.queries.visibility.organization_condition``; nothing else spells this join.
``trail_select`` adds the columns of a whole trail (reference, report, repository, requester), each named
(``TRAIL_COLUMNS``), and ``trail_from_row`` reads one such row into a ``Trail``: the explorer rows, the
remediation plan, the trace API (``views.trace.TrailPush`` is its JSON shape) and the web trail page all
start from it. ``related_digests`` is the one index <-> platform-manifest lookup.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set

from pydantic import TypeAdapter
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.auth.evidence import push_evidence
from imagetrail.facts import VERIFIED
from imagetrail.queries.visibility import organization_condition, reads_every_organization
from imagetrail.store.db import as_utc
from imagetrail.store.models.owners import RunOwner
from imagetrail.store.models.pipeline import (
    ImageReference,
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
from imagetrail.views.filters import ExplorerFilters
from imagetrail.views.trail import OwnerEntry, RelatedDigest, Trail


def pushes_joined(*columns: Any, page: Optional[Any] = None) -> Select:
    """``SELECT columns FROM pushes JOIN jobs JOIN runs JOIN pipelines JOIN projects JOIN organizations``.

    Callers add their own joins (reference, report, repository, requester) and conditions on any of these tables.
    ``page``: a subquery of push ids (column ``id``) that the join starts from, so PostgreSQL reads those pushes
    first, whatever it estimates (the trace's pages).
    """
    query = select(*columns)
    if page is None:
        query = query.select_from(Push)
    else:
        query = query.select_from(page).join(Push, Push.id == page.c.id)
    return (
        query
        .join(Job, Job.id == Push.job_id)
        .join(Run, Run.id == Job.run_id)
        .join(Pipeline, Pipeline.id == Run.pipeline_id)
        .join(Project, Project.id == Pipeline.project_id)
        .join(Organization, Organization.id == Project.organization_id)
    )


# A reader of every organisation, for callers that apply no visibility (the server's own jobs).
EVERY_ORGANIZATION = Principal(kind="server", subject="imagetrail", scopes=frozenset(), organizations=None)


# The columns of a trail, named: ``trail_from_row`` reads them by name, never by position.
TRAIL_COLUMNS = (
    Push.id.label("push_key"), Push.reference, Push.digest, Push.pushed_at,
    ImageReference.registry_host.label("registry"), ImageReference.repository.label("image_repository"),
    ImageReference.tag,
    Job.external_id.label("job_id"), Job.name.label("job_name"), Job.attempt.label("job_attempt"), Job.stage,
    Job.agent_name,
    Run.id.label("run_key"), Run.external_id.label("run_id"), Run.number.label("run_number"),
    Run.attempt.label("run_attempt"), Run.reason, Run.url.label("run_url"), Run.branch, Run.commit,
    Run.repository_id, Run.requester_id,
    Run.repository_evidence, Run.branch_evidence, Run.commit_evidence, Run.requester_evidence,
    Pipeline.id.label("pipeline_key"), Pipeline.external_id.label("pipeline_id"), Pipeline.name.label("pipeline"),
    Project.name.label("project"), Organization.name.label("organization"), Organization.system,
    Organization.server_url,
    Repository.name.label("repository_name"), Repository.uri.label("repository_uri"),
    Repository.type.label("repository_type"),
    Person.name.label("person_name"), Person.email.label("person_email"),
    Report.id.label("report_id"), Report.received_at, Report.identity_kind, Report.identity_subject,
    Report.evidence.label("report_evidence"),
)
# Facts whose evidence the run records per fact, with the column holding the fact's value.
FACT_VALUES = {"repository": "repository_id", "branch": "branch", "commit": "commit", "requester": "requester_id"}


def trail_select(*extra: Any, page: Optional[Any] = None) -> Select:
    """``pushes_joined`` with every ``TRAIL_COLUMNS`` (and ``extra``); callers add conditions and order."""
    return (
        pushes_joined(*TRAIL_COLUMNS, *extra, page=page)
        .join(ImageReference, ImageReference.id == Push.reference_id)
        .join(Report, Report.id == Push.report_id)
        .outerjoin(Repository, Repository.id == Run.repository_id)
        .outerjoin(Person, Person.id == Run.requester_id)
    )


def trail_from_row(row: Any) -> Trail:
    """A ``Trail`` from a row of ``trail_select`` (columns read by name)."""
    return Trail(**_trail_fields(row._asdict()))


def trails_from_rows(rows: Sequence[Any]) -> List[Trail]:
    """``trail_from_row`` of each row, validated in one call (a trail page has up to 500)."""
    return trails_from_records(row_records(rows))


def trails_from_records(records: Sequence[Dict[str, Any]]) -> List[Trail]:
    """``trails_from_rows`` of rows already read as ``row_records``."""
    return _TRAILS.validate_python([_trail_fields(record) for record in records])


def row_records(rows: Sequence[Any]) -> List[Dict[str, Any]]:
    """Rows as dicts keyed by column label. Reading ~45 columns as row attributes cost ~55 us a row (a
    SQLAlchemy ``Row`` attribute is ~1.2 us); one dict per row, keys taken once, ~5 us."""
    if not rows:
        return []
    keys = rows[0]._fields
    return [dict(zip(keys, row)) for row in rows]


def _trail_fields(row: Dict[str, Any]) -> Dict[str, Any]:
    evidence = push_evidence(row["report_evidence"], row["identity_kind"],
                             {fact: (row[column], row[f"{fact}_evidence"]) for fact, column in FACT_VALUES.items()})
    return dict(
        system=row["system"], organization=row["organization"], project=row["project"], pipeline=row["pipeline"],
        pipeline_id=row["pipeline_id"], run_id=row["run_id"], run_number=row["run_number"], run_url=row["run_url"],
        repository=row["repository_uri"] or row["repository_name"], branch=row["branch"], commit=row["commit"],
        owner_name=row["person_name"], owner_email=row["person_email"], pushed_reference=row["reference"],
        pushed_digest=row["digest"], pushed_at=as_utc(row["pushed_at"]), server_url=row["server_url"],
        evidence=evidence, owners=[], pipeline_key=row["pipeline_key"], run_key=row["run_key"],
        repository_name=row["repository_name"], push_key=row["push_key"], registry=row["registry"],
        image_repository=row["image_repository"], tag=row["tag"] or None, job_id=row["job_id"],
        job_name=row["job_name"], job_attempt=row["job_attempt"], stage=row["stage"], agent=row["agent_name"],
        run_attempt=row["run_attempt"], reason=row["reason"], repository_uri=row["repository_uri"],
        repository_type=row["repository_type"], has_requester=row["requester_id"] is not None,
        report_id=row["report_id"], received_at=as_utc(row["received_at"]), identity_kind=row["identity_kind"],
        identity_subject=row["identity_subject"], competing={},
    )


_TRAILS = TypeAdapter(List[Trail])


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


# The columns ``relate`` reads; a caller may select more beside them.
RELATION_COLUMNS = (ImageRelation.index_digest, ImageRelation.manifest_digest, ImageRelation.os,
                    ImageRelation.architecture, ImageRelation.variant)


def relation_condition(digests: Sequence[str]) -> Any:
    """Relations in which any of ``digests`` is the index or the manifest."""
    if len(digests) == 1:
        return or_(ImageRelation.index_digest == digests[0], ImageRelation.manifest_digest == digests[0])
    return or_(ImageRelation.index_digest.in_(digests), ImageRelation.manifest_digest.in_(digests))


def relate(wanted: Iterable[str], rows: Iterable[Any]) -> Dict[str, List[RelatedDigest]]:
    """For each wanted digest, its relatives among ``rows`` (of ``RELATION_COLUMNS``; a row whose
    index_digest is None is skipped): the indexes that list it ("index") and the platform manifests it
    lists ("platform", with os/architecture/variant), sorted by relation then digest."""
    found: Dict[str, Dict[str, RelatedDigest]] = {d: {} for d in wanted}
    for row in rows:
        if row.index_digest is None:
            continue
        if row.manifest_digest in found:
            found[row.manifest_digest].setdefault(
                row.index_digest, RelatedDigest(digest=row.index_digest, relation="index"))
        if row.index_digest in found:
            found[row.index_digest].setdefault(row.manifest_digest, RelatedDigest(
                digest=row.manifest_digest, relation="platform", os=row.os, architecture=row.architecture,
                variant=row.variant))
    return {d: sorted(family.values(), key=lambda r: (r.relation, r.digest)) for d, family in found.items()}


def related_digests(session: Session, digests: Iterable[str]) -> Dict[str, List[RelatedDigest]]:
    """For each digest: the indexes that list it and the platform manifests it lists (see ``relate``);
    one statement per 500 digests. The one relation lookup (the trace adds its registry flags to it)."""
    wanted = sorted(set(digests))
    rows: List[Any] = []
    for chunk in _chunks(wanted, 500):
        rows += session.execute(select(*RELATION_COLUMNS).where(relation_condition(chunk))).all()
    return relate(wanted, rows)


def digest_family(session: Session, digest: str) -> Set[str]:
    """``digest`` and every digest related to it."""
    return {digest, *(r.digest for r in related_digests(session, [digest])[digest])}


def find_trails(
    session: Session,
    digests: Iterable[str],
    filters: Optional[ExplorerFilters] = None,
    principal: Optional[Principal] = None,
) -> Dict[str, Trail]:
    """The newest matching push for each digest (an exact digest match wins over a related one, then a
    push of a verified run over a claimed one)."""
    related = {d: {d, *(r.digest for r in family)} for d, family in related_digests(session, digests).items()}
    candidates = sorted(set().union(*related.values())) if related else []
    if not candidates:
        return {}
    conditions = trail_conditions(filters or ExplorerFilters(), principal or EVERY_ORGANIZATION)
    by_digest: Dict[str, List[Trail]] = defaultdict(list)
    for chunk in _chunks(candidates, 500):
        for trail in trails_from_rows(session.execute(trail_select().where(Push.digest.in_(chunk), *conditions)).all()):
            by_digest[trail.pushed_digest].append(trail)
    trails: Dict[str, Trail] = {}
    for digest, family in related.items():
        best = None
        for candidate in family:
            for trail in by_digest.get(candidate, ()):
                # A push whose run is verified (sent by the run's own job token) wins over a claimed one:
                # an ingest key cannot make a running image point at another run by reporting it later.
                key = (candidate == digest, trail.evidence.get("run") == VERIFIED,
                       trail.pushed_at or datetime.min.replace(tzinfo=timezone.utc), trail.push_key)
                if best is None or key > best[0]:
                    best = (key, trail)
        if best is not None:
            trails[digest] = best[1]
    attach_owners(session, trails.values())
    return trails


def stored_owners(session: Session, run_keys: Iterable[int]) -> Dict[int, List[OwnerEntry]]:
    """The resolved owners of these runs (runs.id), in order; runs never resolved are absent."""
    keys = sorted(set(run_keys))
    found: Dict[int, List[OwnerEntry]] = {}
    for chunk in _chunks(keys, 500):
        for owner in session.execute(
            select(RunOwner.run_id, RunOwner.source, RunOwner.name, RunOwner.email, RunOwner.login,
                   RunOwner.detail, RunOwner.evidence)
            .where(RunOwner.run_id.in_(chunk))
            .order_by(RunOwner.run_id, RunOwner.position)
        ).all():
            found.setdefault(owner.run_id, []).append(OwnerEntry(
                source=owner.source, name=owner.name, email=owner.email, login=owner.login, detail=owner.detail,
                evidence=owner.evidence))
    return found


def attach_owners(session: Session, trails: Iterable[Trail], *, stored: bool = True) -> None:
    """Each trail's resolved owners, else its requester (never a service identity). ``stored=False``: the
    caller knows no run of these trails has resolved owners (no query)."""
    from imagetrail.queries.owners import requester_owner

    trails = list(trails)
    found = stored_owners(session, [t.run_key for t in trails if t.run_key is not None]) if stored else {}
    for trail in trails:
        if trail.run_key in found:
            trail.owners = found[trail.run_key]
        else:
            requester = requester_owner(trail)
            trail.owners = [requester] if requester else []


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pushes_hidden(session: Session, principal: Principal, conditions: Sequence[Any]) -> bool:
    """Whether pushes matching ``conditions`` exist in organisations ``principal`` may not read (never which).

    Asked only after a search found nothing the reader may read, so an empty answer can say why."""
    if reads_every_organization(principal):
        return False
    return session.execute(select(pushes_joined(Push.id).where(*conditions).exists())).scalar() is True
