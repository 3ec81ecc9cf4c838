"""Explorer queries: running containers and pushed images, with exposure, vulnerabilities and their trail.

Plain functions over a SQLAlchemy session, used by the API (``GET /v1/query``), the CLI and the
web explorer in-process:

* ``run_query(session, filters, principal, page, page_size, sort) -> ExplorerPage``
* ``coverage_gaps(session, principal, filters, page, page_size) -> GapPage``
* ``coverage_summary(session, principal) -> CoverageSummary``

Digests match across ``image_relations``: a container running a platform manifest is traced to
the run that pushed its index, and the other way round. Filtering happens in SQL (paging is
server-side); the trail (run, commit, owner) is fetched for the page rows only.

Images no cluster runs are rows too (``running=False``): a pushed digest with neither itself nor a
related index/manifest digest in ``running_containers``. With ``running`` unset, running containers
come first, then the images that are not running (Defender's "container images with
vulnerabilities", running or not).

Visibility: a reader sees a row when the image was pushed by a run of an organisation it is
granted. Running containers with no trail belong to no organisation, so only readers granted every
organisation (``principal.organizations is None``) see them, in the explorer and as coverage gaps.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Dict, Iterable, List, Literal, Optional, Sequence, Set

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, and_, false, func, or_, select, union
from sqlalchemy.orm import Session

from imagetrail import severity as sev
from imagetrail.reference import normalize_registry, parse_reference
from imagetrail.queries.untraced import untraced_digests
from imagetrail.auth import Principal
from imagetrail.queries.reconcile_status import ReconcileStatus, reconcile_status
from imagetrail.store.models.cloud import (
    CONTAINER_IDENTITY,
    Cluster,
    Finding,
    ImageScan,
    RunningContainer,
    VulnerabilitySummary,
    sort_columns,
)
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
from imagetrail.facts import VERIFIED
from imagetrail.auth.evidence import push_evidence

MAX_PAGE_SIZE = 500
# Deeper pages are refused: page x page_size must stay a small OFFSET (and fit a 64-bit integer).
MAX_PAGE = 100_000
SortKey = Literal["severity", "-severity", "cluster", "namespace", "workload", "image", "digest"]
SORT_KEYS = ("severity", "-severity", "cluster", "namespace", "workload", "image", "digest")


class ExplorerFilters(BaseModel):
    """Filters, combined with AND (like Defender's Cloud Security Explorer conditions)."""

    model_config = ConfigDict(extra="forbid")

    exposed: Optional[bool] = None
    cluster: Optional[str] = None
    namespace: Optional[str] = None
    min_severity: Optional[Literal["low", "medium", "high", "critical"]] = None
    cve: Optional[str] = None
    fix_available: bool = False
    registry: Optional[str] = None
    repository: Optional[str] = None
    org: Optional[str] = None
    project: Optional[str] = None
    pipeline: Optional[str] = None  # name or definition id
    pushed_after: Optional[datetime] = None
    pushed_before: Optional[datetime] = None
    digests: Optional[List[str]] = None  # rows running one of these digests (web explorer selections)
    # Rows running a digest a registry reported pushed that nothing explains (imagetrail.ingest.registry_events).
    untraced_push: bool = False
    # True: only running containers; False: only pushed images no cluster runs; None: both.
    running: Optional[bool] = None

    @field_validator("min_severity", mode="before")
    @classmethod
    def _lower(cls, value):
        return value.lower() if isinstance(value, str) else value

    @field_validator("cve", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.strip().upper() if isinstance(value, str) and value.strip() else None

    def trail_filtered(self) -> bool:
        return any(
            v is not None
            for v in (self.org, self.project, self.pipeline, self.pushed_after, self.pushed_before)
        )

    def container_filtered(self) -> bool:
        """Filters only a running container can match (an image no cluster runs is never exposed)."""
        return bool(self.exposed or self.cluster or self.namespace or self.untraced_push)

    def vulnerability_filtered(self) -> bool:
        return self.min_severity is not None or self.cve is not None or self.fix_available


class Exposure(BaseModel):
    reason: str
    address: Optional[str] = None


class SeverityCounts(BaseModel):
    critical: int = 0
    high: int = 0
    medium: int = 0
    low: int = 0
    unknown: int = 0


class TopCve(BaseModel):
    id: str
    severity: str
    package: str
    installed_version: Optional[str] = None
    fixed_version: Optional[str] = None


class Vulnerabilities(BaseModel):
    counts: SeverityCounts
    max_severity: str
    top: List[TopCve] = Field(default_factory=list)
    scanner: Optional[str] = None
    scanned_at: Optional[datetime] = None
    scanned_digest: Optional[str] = None  # differs from the row's digest when matched over an index


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


class ExplorerRow(BaseModel):
    # The container fields are None on a row for an image no cluster runs (running=False).
    running: bool = True
    cluster: Optional[str] = None
    namespace: Optional[str] = None
    workload_kind: Optional[str] = None
    workload_name: Optional[str] = None
    owner_note: Optional[str] = None
    pod: Optional[str] = None
    container: Optional[str] = None
    container_kind: Optional[str] = None
    image: str
    registry: str
    repository: str
    digest: Optional[str] = None
    digest_error: Optional[str] = None
    exposed: bool
    exposure: List[Exposure] = Field(default_factory=list)
    vulnerabilities: Optional[Vulnerabilities] = None
    trail: Optional[Trail] = None


class ExplorerPage(BaseModel):
    rows: List[ExplorerRow]
    total: int
    page: int
    page_size: int
    sort: str


class Gap(BaseModel):
    cluster: str
    namespace: str
    workload_kind: str
    workload_name: str
    container: str
    image: str
    registry: str
    digest: Optional[str] = None
    exposed: bool
    reason: str  # no-report | registry-not-pushed-to | unknown-digest
    detail: str


class GapPage(BaseModel):
    gaps: List[Gap]
    total: int
    page: int
    page_size: int


class ClusterCoverage(BaseModel):
    name: str
    source: str
    synced_at: datetime
    containers: int
    untraced: int


class RegistryCoverage(BaseModel):
    registry: str
    pushes: int
    last_pushed_at: Optional[datetime] = None


class ProjectCoverage(BaseModel):
    organization: str
    project: str
    last_report_at: Optional[datetime] = None


class ScannerCoverage(BaseModel):
    scanner: str
    images: int
    last_scanned_at: Optional[datetime] = None
    last_received_at: Optional[datetime] = None


class CoverageSummary(BaseModel):
    clusters: List[ClusterCoverage]
    registries: List[RegistryCoverage]
    projects: List[ProjectCoverage]
    scanners: List[ScannerCoverage]
    # Reports collectors kept while they could not deliver: pending, reconciled, last reconcile.
    reconcile: ReconcileStatus = Field(default_factory=ReconcileStatus)


# --- digest sets ------------------------------------------------------------------------------


def _with_related(digests: Select) -> Select:
    """The digests of ``digests`` (a one-column select) plus their index / platform-manifest relatives."""
    base = digests.subquery()
    column = base.c[0]
    return union(
        select(column),
        select(ImageRelation.manifest_digest).where(ImageRelation.index_digest.in_(select(column))),
        select(ImageRelation.index_digest).where(ImageRelation.manifest_digest.in_(select(column))),
    )


def _pushes_joined(columns: Sequence) -> Select:
    return (
        select(*columns)
        .select_from(Push)
        .join(Job, Job.id == Push.job_id)
        .join(Run, Run.id == Job.run_id)
        .join(Pipeline, Pipeline.id == Run.pipeline_id)
        .join(Project, Project.id == Pipeline.project_id)
        .join(Organization, Organization.id == Project.organization_id)
    )


def _trail_conditions(filters: ExplorerFilters, allowed: Optional[Set[str]]) -> list:
    conditions = [Push.digest.is_not(None)]
    if allowed is not None:
        conditions.append(Organization.name.in_(sorted(allowed)) if allowed else false())
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


def allowed_organizations(principal: Principal) -> Optional[Set[str]]:
    return None if principal.organizations is None else {o.lower() for o in principal.organizations}


# --- the explorer query -----------------------------------------------------------------------


def _conditions(filters: ExplorerFilters, principal: Principal) -> list:
    """WHERE conditions on running_containers alone (its copied cluster and vulnerability columns)."""
    c = RunningContainer
    conditions: list = []
    if filters.exposed is not None:
        conditions.append(c.exposed.is_(filters.exposed))
    if filters.cluster:
        conditions.append(c.cluster_name == filters.cluster)
    if filters.namespace:
        conditions.append(c.namespace == filters.namespace)
    if filters.registry:
        conditions.append(c.registry_host == normalize_registry(filters.registry))
    if filters.repository:
        conditions.append(c.repository == filters.repository.lower())
    if filters.digests:
        conditions.append(c.digest.in_(sorted(set(filters.digests))))
    if filters.untraced_push:
        conditions.append(c.digest.in_(untraced_digests()))
    conditions.extend(_vulnerability_conditions(filters, c.scan_id, c.max_severity, c.max_fixable_severity))
    allowed = allowed_organizations(principal)
    if filters.trail_filtered() or allowed is not None:
        pushed = _pushes_joined([Push.digest]).where(*_trail_conditions(filters, allowed))
        conditions.append(c.digest.in_(_with_related(pushed)))
    return conditions


def _vulnerability_conditions(filters: ExplorerFilters, scan_id, max_severity, max_fixable) -> list:
    """Severity / CVE / fix conditions on a table carrying a summary's columns (containers or summaries)."""
    rank = sev.parse_filter(filters.min_severity) if filters.min_severity else None
    if filters.cve:
        finding = [Finding.vulnerability_id == filters.cve]
        if rank:
            finding.append(Finding.severity >= rank)
        if filters.fix_available:
            finding.append(and_(Finding.fixed_version.is_not(None), Finding.fixed_version != ""))
        return [scan_id.in_(select(Finding.scan_id).where(*finding))]
    if filters.fix_available:
        return [max_fixable >= (rank or sev.UNKNOWN)]
    if rank:
        return [max_severity >= rank]
    return []


def running_digests() -> Select:
    """Every digest a cluster runs, with its index / platform-manifest relatives."""
    return _with_related(select(RunningContainer.digest).where(RunningContainer.digest.is_not(None)))


def pushed_images(filters: ExplorerFilters, allowed: Optional[Set[str]]) -> Select:
    """Pushed digests matching the trail, image and vulnerability filters (one column, may repeat).

    ``filters.running`` picks images a cluster runs (True), does not run (False) or both (None).
    """
    vs = VulnerabilitySummary
    query = (
        _pushes_joined([Push.digest])
        .join(ImageReference, ImageReference.id == Push.reference_id)
        .where(*_trail_conditions(filters, allowed))
    )
    if filters.registry:
        query = query.where(ImageReference.registry_host == normalize_registry(filters.registry))
    if filters.repository:
        query = query.where(ImageReference.repository == filters.repository.lower())
    if filters.digests:
        query = query.where(Push.digest.in_(sorted(set(filters.digests))))
    vulnerability = _vulnerability_conditions(filters, vs.scan_id, vs.max_severity, vs.max_fixable_severity)
    if vulnerability:
        query = query.join(vs, vs.digest == Push.digest).where(*vulnerability)
    if filters.running is True:
        query = query.where(Push.digest.in_(running_digests()))
    elif filters.running is False:
        query = query.where(Push.digest.not_in(running_digests()))
    return query


def _not_running_page(
    session: Session, filters: ExplorerFilters, principal: Principal, offset: int, limit: int, sort: str
) -> tuple:
    """(total, rows) of pushed images no cluster runs; sorted by severity, else by digest."""
    if filters.container_filtered():
        return 0, []
    pushed = pushed_images(filters.model_copy(update={"running": False}), allowed_organizations(principal))
    digests = pushed.distinct().subquery()
    vs = VulnerabilitySummary
    total = session.execute(select(func.count()).select_from(digests)).scalar_one()
    if limit <= 0 or not total:
        return total, []
    severity = func.coalesce(vs.max_severity, -1)
    critical, high = func.coalesce(vs.critical, 0), func.coalesce(vs.high, 0)
    order = {
        "-severity": [severity.desc(), critical.desc(), high.desc()],
        "severity": [severity, critical, high],
    }.get(sort, [])
    rows = session.execute(
        select(digests.c.digest, vs)
        .outerjoin(vs, vs.digest == digests.c.digest)
        .order_by(*order, digests.c.digest)
        .limit(limit)
        .offset(offset)
    ).all()
    wanted = [digest for digest, _ in rows]
    trails = find_trails(session, wanted, filters, allowed_organizations(principal))
    scans = _scanners(session, {summary.scan_id for _, summary in rows if summary is not None})
    page = []
    for digest, summary in rows:
        trail = trails.get(digest)
        reference = trail.pushed_reference if trail else digest
        name = parse_reference(reference)
        page.append(
            ExplorerRow(
                running=False,
                image=reference,
                registry=name.registry,
                repository=name.repository,
                digest=digest,
                exposed=False,
                vulnerabilities=_vulnerabilities(summary, scans),
                trail=trail,
            )
        )
    return total, page


def _order(sort: str) -> list:
    """ORDER BY for ``sort``: each matches one running_containers index (see the model)."""
    c = RunningContainer
    if sort == "-severity":
        return [
            c.max_severity.desc(),
            c.critical_count.desc(),
            c.high_count.desc(),
            *(getattr(c, name) for name in CONTAINER_IDENTITY),
        ]
    if sort == "severity":
        return [c.max_severity, c.critical_count, c.high_count, *(getattr(c, n) for n in CONTAINER_IDENTITY)]
    leading = {
        "cluster": "cluster_name",
        "namespace": "namespace",
        "workload": "workload_name",
        "image": "image",
        "digest": "digest",
    }.get(sort)
    if leading is None:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
    return [getattr(c, name) for name in sort_columns(leading)]


def _check_paging(page: int, page_size: int) -> None:
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page must be between 1 and {MAX_PAGE}, not {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")


def run_query(
    session: Session,
    filters: ExplorerFilters,
    principal: Principal,
    page: int = 1,
    page_size: int = 50,
    sort: str = "-severity",
) -> ExplorerPage:
    """One page of running containers, then of pushed images no cluster runs, matching ``filters``
    that ``principal`` may see (``filters.running`` keeps one kind)."""
    _check_paging(page, page_size)
    order = _order(sort)
    offset = (page - 1) * page_size
    if filters.running is False:
        total, rows = _not_running_page(session, filters, principal, offset, page_size, sort)
        return ExplorerPage(rows=rows, total=total, page=page, page_size=page_size, sort=sort)
    conditions = _conditions(filters, principal)
    # Exact total: the web explorer pages and exports by it. One table, so an index or a seq scan.
    total = session.execute(
        select(func.count()).select_from(RunningContainer).where(*conditions)
    ).scalar_one()
    rows = _running_page(session, filters, principal, conditions, order, offset, page_size)
    if filters.running is None:
        # Images no cluster runs follow the running containers, paged as one list.
        rest, more = _not_running_page(
            session, filters, principal, max(0, offset - total), page_size - len(rows), sort
        )
        total, rows = total + rest, rows + more
    return ExplorerPage(rows=rows, total=total, page=page, page_size=page_size, sort=sort)


def _running_page(
    session: Session,
    filters: ExplorerFilters,
    principal: Principal,
    conditions: list,
    order: list,
    offset: int,
    page_size: int,
) -> List[ExplorerRow]:
    # The page's ids first (read in index order, only ids carried past OFFSET), then its rows.
    ids = (
        session.execute(
            select(RunningContainer.id)
            .where(*conditions)
            .order_by(*order)
            .limit(page_size)
            .offset(offset)
        )
        .scalars()
        .all()
    )
    position = {row_id: n for n, row_id in enumerate(ids)}
    page_rows = (
        sorted(
            session.execute(
                select(RunningContainer, VulnerabilitySummary)
                .outerjoin(VulnerabilitySummary, VulnerabilitySummary.digest == RunningContainer.digest)
                .where(RunningContainer.id.in_(ids))
            ).all(),
            key=lambda row: position[row[0].id],
        )
        if ids
        else []
    )
    containers = [row[0] for row in page_rows]
    digests = {c.digest for c in containers if c.digest}
    trails = find_trails(session, digests, filters, allowed_organizations(principal))
    scans = _scanners(session, {row[1].scan_id for row in page_rows if row[1] is not None})
    return [
        _row(container, summary, trails.get(container.digest or ""), scans)
        for container, summary in page_rows
    ]


def _scanners(session: Session, scan_ids: Set[int]) -> Dict[int, str]:
    if not scan_ids:
        return {}
    return dict(
        session.execute(select(ImageScan.id, ImageScan.scanner).where(ImageScan.id.in_(scan_ids))).all()
    )


def _row(
    container: RunningContainer,
    summary: Optional[VulnerabilitySummary],
    trail: Optional[Trail],
    scanners: Dict[int, str],
) -> ExplorerRow:
    return ExplorerRow(
        cluster=container.cluster_name,
        namespace=container.namespace,
        workload_kind=container.workload_kind,
        workload_name=container.workload_name,
        owner_note=container.owner_note,
        pod=container.pod,
        container=container.container,
        container_kind=container.container_kind,
        image=container.image,
        registry=container.registry_host,
        repository=container.repository,
        digest=container.digest,
        digest_error=container.digest_error,
        exposed=container.exposed,
        exposure=[Exposure(**item) for item in container.exposure or []],
        vulnerabilities=_vulnerabilities(summary, scanners),
        trail=trail,
    )


def _vulnerabilities(
    summary: Optional[VulnerabilitySummary], scanners: Dict[int, str]
) -> Optional[Vulnerabilities]:
    if summary is None:
        return None
    return Vulnerabilities(
        counts=SeverityCounts(
            critical=summary.critical,
            high=summary.high,
            medium=summary.medium,
            low=summary.low,
            unknown=summary.unknown,
        ),
        max_severity=sev.NAMES[summary.max_severity],
        top=[TopCve(**item) for item in summary.top or []],
        scanner=scanners.get(summary.scan_id),
        scanned_at=summary.scanned_at,
        scanned_digest=summary.via_digest,
    )


# --- trails -----------------------------------------------------------------------------------


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
    allowed: Optional[Set[str]] = None,
) -> Dict[str, Trail]:
    """The newest matching push for each digest (an exact digest match wins over a related one, then a
    push of a verified run over a claimed one)."""
    related = related_digests(session, digests)
    candidates = sorted(set().union(*related.values())) if related else []
    if not candidates:
        return {}
    conditions = _trail_conditions(filters or ExplorerFilters(), allowed)
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
            _pushes_joined(columns)
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


# --- coverage -------------------------------------------------------------------------------


def _untraced() -> Select:
    pushed = select(Push.digest).where(Push.digest.is_not(None))
    return (
        select(RunningContainer, Cluster.name)
        .join(Cluster, Cluster.id == RunningContainer.cluster_id)
        .where(or_(RunningContainer.digest.is_(None), RunningContainer.digest.not_in(_with_related(pushed))))
    )


def coverage_gaps(
    session: Session,
    principal: Principal,
    filters: Optional[ExplorerFilters] = None,
    page: int = 1,
    page_size: int = 50,
) -> GapPage:
    """Running containers whose image no pipeline report explains, with why.

    Only readers granted every organisation see gaps (a gap belongs to no organisation).
    Container-side filters (exposed, cluster, namespace, registry, repository) apply.
    """
    _check_paging(page, page_size)
    if principal.organizations is not None:
        return GapPage(gaps=[], total=0, page=page, page_size=page_size)
    filters = filters or ExplorerFilters()
    query = _untraced()
    if filters.exposed is not None:
        query = query.where(RunningContainer.exposed.is_(filters.exposed))
    if filters.cluster:
        query = query.where(Cluster.name == filters.cluster)
    if filters.namespace:
        query = query.where(RunningContainer.namespace == filters.namespace)
    if filters.registry:
        query = query.where(RunningContainer.registry_host == normalize_registry(filters.registry))
    if filters.repository:
        query = query.where(RunningContainer.repository == filters.repository.lower())
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(
        query.order_by(
            RunningContainer.exposed.desc(),
            Cluster.name,
            RunningContainer.namespace,
            RunningContainer.workload_name,
            RunningContainer.container,
            RunningContainer.id,
        )
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    pushed_registries = _pushed_registries(session)
    gaps = []
    for container, cluster in rows:
        if container.digest is None:
            reason, detail = "unknown-digest", container.digest_error or "the running digest is unknown"
        elif container.registry_host not in pushed_registries:
            reason = "registry-not-pushed-to"
            detail = (
                f"no pipeline reported a push to registry {container.registry_host}: "
                "the image was pushed outside Azure DevOps / GitHub Actions (or by a pipeline without "
                "the ImageTrail collector)"
            )
        else:
            reason = "no-report"
            detail = f"no pipeline report names {container.digest} or a related index/manifest digest"
        gaps.append(
            Gap(
                cluster=cluster,
                namespace=container.namespace,
                workload_kind=container.workload_kind,
                workload_name=container.workload_name,
                container=container.container,
                image=container.image,
                registry=container.registry_host,
                digest=container.digest,
                exposed=container.exposed,
                reason=reason,
                detail=detail,
            )
        )
    return GapPage(gaps=gaps, total=total, page=page, page_size=page_size)


def _pushed_registries(session: Session) -> Set[str]:
    return {
        normalize_registry(r)
        for r in session.execute(select(ImageReference.registry_host).distinct()).scalars()
    }


def coverage_summary(session: Session, principal: Principal) -> CoverageSummary:
    """Which clusters, registries, projects and scanners report, and when each last did."""
    allowed = allowed_organizations(principal)
    everything = allowed is None
    clusters: List[ClusterCoverage] = []
    if everything:
        untraced = dict(
            session.execute(
                _untraced().with_only_columns(Cluster.name, func.count()).group_by(Cluster.name)
            ).all()
        )
        for cluster in session.execute(select(Cluster).order_by(Cluster.name)).scalars():
            clusters.append(
                ClusterCoverage(
                    name=cluster.name,
                    source=cluster.source,
                    synced_at=cluster.synced_at,
                    containers=cluster.container_count,
                    untraced=untraced.get(cluster.name, 0),
                )
            )
    org_condition = [] if everything else [Organization.name.in_(sorted(allowed) or [""])]
    registry_rows = session.execute(
        _pushes_joined([ImageReference.registry_host, func.count(Push.id), func.max(Push.pushed_at)])
        .join(ImageReference, ImageReference.id == Push.reference_id)
        .where(*org_condition)
        .group_by(ImageReference.registry_host)
        .order_by(ImageReference.registry_host)
    ).all()
    project_rows = session.execute(
        select(Organization.name, Project.name, Project.last_report_at)
        .join(Organization, Organization.id == Project.organization_id)
        .where(*org_condition)
        .order_by(Organization.name, Project.name)
    ).all()
    scanners: List[ScannerCoverage] = []
    if everything:
        scanner_rows = session.execute(
            select(
                ImageScan.scanner,
                func.count(ImageScan.id),
                func.max(ImageScan.scanned_at),
                func.max(ImageScan.received_at),
            )
            .group_by(ImageScan.scanner)
            .order_by(ImageScan.scanner)
        ).all()
        scanners = [
            ScannerCoverage(scanner=s, images=n, last_scanned_at=a, last_received_at=b)
            for s, n, a, b in scanner_rows
        ]
    return CoverageSummary(
        clusters=clusters,
        registries=[RegistryCoverage(registry=r, pushes=n, last_pushed_at=t) for r, n, t in registry_rows],
        projects=[ProjectCoverage(organization=o, project=p, last_report_at=t) for o, p, t in project_rows],
        scanners=scanners,
        reconcile=reconcile_status(session, principal),
    )


__all__ = [
    "ExplorerFilters",
    "ExplorerPage",
    "ExplorerRow",
    "GapPage",
    "Gap",
    "CoverageSummary",
    "Trail",
    "run_query",
    "coverage_gaps",
    "coverage_summary",
    "find_trails",
    "related_digests",
    "SORT_KEYS",
]
