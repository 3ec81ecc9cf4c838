"""Explorer queries: running containers and pushed images, with exposure, vulnerabilities and their trail.

Plain functions over a SQLAlchemy session, used by the API (``GET /v1/query``), the CLI and the
web explorer in-process:

* ``run_query(session, filters, principal, page, page_size, sort, after, before) -> ExplorerPage``
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
organisation (``principal.organizations is None``) see them, in the explorer and as coverage gaps. For running
containers the rule is ``visibility.container_condition_parts`` (the container's copy of
``digest_organizations``): the page filters on their OR, the total sums a count per part.

Paging: a page of running containers is read in its sort's index, either past an OFFSET of ids (a typed page
number) or from a seek cursor of the neighbouring page (``after`` / ``before``), which costs the same on any
page.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from sqlalchemy import Select, and_, false, func, or_, select, true, tuple_, union_all
from sqlalchemy.orm import Session

from imagetrail import severity as sev
from imagetrail.auth import Principal
from imagetrail.queries.trail import (
    EVERY_ORGANIZATION,
    find_trails,
    pushes_joined,
    trail_conditions,
)
from imagetrail.queries.untraced import untraced_digests
from imagetrail.queries.visibility import (
    container_condition_parts,
    digest_condition,
    reads_every_organization,
)
from imagetrail.reference import normalize_registry, registry_and_repository
from imagetrail.store.models.cloud import (
    CONTAINER_IDENTITY,
    Finding,
    ImageScan,
    PushedDigest,
    RunningContainer,
    VulnerabilitySummary,
    running_digests,
    running_ways,
    sort_columns,
)
from imagetrail.store.models.pipeline import ImageReference, Push, with_related
from imagetrail.views.explorer import (
    ExplorerPage,
    ExplorerRow,
    Exposure,
    SeverityCounts,
    TopCve,
    Vulnerabilities,
)
from imagetrail.views.filters import SORT_KEYS, ExplorerFilters, check_paging
from imagetrail.views.trail import Trail


def _conditions(session: Session, filters: ExplorerFilters, principal: Principal) -> Tuple[list, list]:
    """WHERE conditions on running_containers alone (its copied cluster and vulnerability columns), and
    visibility as parts no row meets two of (a visible row meets one: ``container_condition_parts``)."""
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
    if filters.trail_filtered():  # the trail's conditions carry visibility
        pushed = pushes_joined(Push.digest).where(*trail_conditions(filters, principal))
        conditions.append(c.digest.in_(with_related(pushed)))
        return conditions, [true()]
    # Visibility alone: the container's copy of its digest's organisations, not a join up from every push.
    return conditions, container_condition_parts(session, principal)


def running_count(conditions: list, visible: list) -> Select:
    """The count of running containers meeting ``conditions`` and one of the disjoint ``visible`` parts: one
    count per part, summed in one statement, so each part is planned on its own index (for the OR of them, a
    reader's unfiltered count read every row: 36 ms against 6 ms at 100,000 containers, bench_web.md)."""
    counts = [select(func.count()).select_from(RunningContainer).where(*conditions, part).scalar_subquery()
              for part in visible]
    return select(sum(counts[1:], counts[0]))


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


def not_running(digest: Any) -> list:
    """Conditions: no cluster runs ``digest``, itself or an index / platform-manifest relative of it (three NOT
    EXISTS: anti-joins)."""
    return [~way for way in running_ways(digest)]


def _reads_pushed_digests(filters: ExplorerFilters) -> bool:
    """Images not running come from ``pushed_digests`` (no trail, registry or repository filter: those need the
    pushes themselves)."""
    return not (filters.trail_filtered() or filters.registry or filters.repository)


def _pushed_not_running(session: Session, filters: ExplorerFilters, principal: Principal) -> Tuple[list, list]:
    """(known, unknown): conditions on ``pushed_digests`` rows no cluster runs that ``principal`` may see. Known:
    ``running`` is false; unknown: not filled yet (NULL), so checked here against the running containers."""
    p = PushedDigest
    shared = [digest_condition(session, principal, p.digest)]
    if filters.digests:
        shared.append(p.digest.in_(sorted(set(filters.digests))))
    # "= false" reads the index; "IS FALSE" does not
    return [p.running == false(), *shared], [p.running.is_(None), *shared, *not_running(p.digest)]


def _not_running_digests(session: Session, filters: ExplorerFilters, principal: Principal) -> Select:
    """Distinct pushed digests no cluster runs matching ``filters`` (one column).

    With no trail, registry or repository filter this reads ``pushed_digests`` (each pushed digest once, with its
    maintained ``running``; a NULL one, not filled yet, is checked here) instead of checking every push against
    the running containers; a reader of some organisations keeps the digests ``digest_organizations`` gives
    them, the rule the running containers follow.
    """
    if not _reads_pushed_digests(filters):
        return pushed_images(filters.model_copy(update={"running": False}), principal).distinct()
    p, vs = PushedDigest, VulnerabilitySummary
    known, unknown = _pushed_not_running(session, filters, principal)
    # Two disjoint parts, each read from its own index range: an OR of them made one scan with the checks as
    # per-row subplans (and a cost estimate that had PostgreSQL JIT-compile the statement, ~200 ms).
    digests = union_all(select(p.digest).where(*known), select(p.digest).where(*unknown)).subquery()
    query = select(digests.c.digest)
    vulnerability = _vulnerability_conditions(filters, vs.scan_id, vs.max_severity, vs.max_fixable_severity)
    if vulnerability:
        query = query.join(vs, vs.digest == digests.c.digest).where(*vulnerability)
    return query


def _not_running_rows(session: Session, filters: ExplorerFilters, principal: Principal, digests: Any,
                      sort: str) -> Select:
    """(digest, summary or None) of the images not running, in page order (``digests``: their subquery).

    With a vulnerability filter every row has a summary, so the page is read from the summaries in severity order
    (``ix_vulnerability_summaries_by_severity``) with a lookup in ``pushed_digests`` for each, and stops at the
    page's last row: an admin's "not running, high or worse" page at 1,000,000 pushes went from a join and sort of
    all ~60,000 matches (180 ms) to ~55 index lookups (0.3 ms). Its total is still counted in full.
    """
    vs = VulnerabilitySummary
    vulnerability = _vulnerability_conditions(filters, vs.scan_id, vs.max_severity, vs.max_fixable_severity)
    if vulnerability and _reads_pushed_digests(filters):
        p = PushedDigest
        known, unknown = _pushed_not_running(session, filters, principal)
        return (select(vs.digest, vs).join(p, p.digest == vs.digest)
                .where(*vulnerability, or_(and_(*known), and_(*unknown)))
                .order_by(*_severity_order(sort, vs.max_severity, vs.critical, vs.high), vs.digest))
    # Outer-joined: an image without a scan sorts as the least severe.
    order = _severity_order(sort, func.coalesce(vs.max_severity, -1), func.coalesce(vs.critical, 0),
                            func.coalesce(vs.high, 0))
    return (select(digests.c.digest, vs).outerjoin(vs, vs.digest == digests.c.digest)
            .order_by(*order, digests.c.digest))


def _severity_order(sort: str, worst: Any, critical: Any, high: Any) -> list:
    """ORDER BY terms of the images not running for ``sort`` (none but the digest for the other sorts)."""
    if sort == "-severity":
        return [worst.desc(), critical.desc(), high.desc()]
    if sort == "severity":
        return [worst, critical, high]
    return []


def pushed_images(filters: ExplorerFilters, principal: Principal) -> Select:
    """Pushed digests matching the trail, image and vulnerability filters (one column, may repeat).

    ``filters.running`` picks images a cluster runs (True), does not run (False) or both (None). The pushes are
    joined up to their organisation (``pushes_joined``) when a trail filter or the principal's visibility needs
    it, and to their reference for a registry / repository filter; a reader of everything counts pushes alone.
    """
    vs = VulnerabilitySummary
    if filters.trail_filtered() or principal.organizations is not None:
        query = pushes_joined(Push.digest).where(*trail_conditions(filters, principal))
    else:
        query = select(Push.digest).where(Push.digest.is_not(None))
    if filters.registry or filters.repository:
        query = query.join(ImageReference, ImageReference.id == Push.reference_id)
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
        query = query.where(*not_running(Push.digest))
    return query


def _not_running_page(
    session: Session, filters: ExplorerFilters, principal: Principal, offset: int, limit: int, sort: str
) -> tuple:
    """(total, rows) of pushed images no cluster runs; sorted by severity, else by digest."""
    if filters.container_filtered():
        return 0, []
    digests = _not_running_digests(session, filters, principal).subquery()
    total = session.execute(select(func.count()).select_from(digests)).scalar_one()
    if limit <= 0 or not total:
        return total, []
    rows = session.execute(
        _not_running_rows(session, filters, principal, digests, sort).limit(limit).offset(offset)
    ).all()
    wanted = [digest for digest, _ in rows]
    trails = find_trails(session, wanted, filters, principal)
    scans = _scanners(session, {summary.scan_id for _, summary in rows if summary is not None})
    page = []
    for digest, summary in rows:
        trail = trails.get(digest)
        reference = trail.pushed_reference if trail else digest
        registry, repository = registry_and_repository(reference)
        page.append(
            ExplorerRow(
                running=False,
                image=reference,
                registry=registry,
                repository=repository,
                digest=digest,
                exposed=False,
                vulnerabilities=_vulnerabilities(summary, scans),
                trail=trail,
            )
        )
    return total, page


def _sort_keys(sort: str) -> List[Tuple[Any, bool]]:
    """(column, descending) for ``sort``: each matches one running_containers index (see the model)."""
    c = RunningContainer
    identity = [(getattr(c, name), False) for name in CONTAINER_IDENTITY]
    if sort in ("-severity", "severity"):
        descending = sort == "-severity"
        severity = [(c.max_severity, descending), (c.critical_count, descending), (c.high_count, descending)]
        return [*severity, *identity]
    leading = {
        "cluster": "cluster_name",
        "namespace": "namespace",
        "workload": "workload_name",
        "image": "image",
        "digest": "digest",
    }.get(sort)
    if leading is None:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
    return [(getattr(c, name), False) for name in sort_columns(leading)]


# Sorts whose columns are all NOT NULL, so "after this row" is a plain comparison (a NULL digest sorts first
# on SQLite and last on PostgreSQL): the digest sort pages by OFFSET.
SEEK_SORTS = frozenset(SORT_KEYS) - {"digest"}
MAX_CURSOR = 8192  # characters: a cursor holds one row's sort values (names of at most a few hundred)


def _cursor(sort: str, container: RunningContainer) -> Optional[str]:
    """The opaque seek cursor of one running container in ``sort`` order."""
    if sort not in SEEK_SORTS:
        return None
    values = [getattr(container, column.key) for column, _ in _sort_keys(sort)]
    raw = json.dumps([sort, values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(raw: str, sort: str, name: str = "after") -> List[Any]:
    """The sort values a cursor holds; ValueError naming ``name`` when it is not a cursor of ``sort``."""
    decoded = None
    if len(raw) <= MAX_CURSOR:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            pass
    keys = _sort_keys(sort) if sort in SEEK_SORTS else []
    if not (
        isinstance(decoded, list)
        and len(decoded) == 2
        and decoded[0] == sort
        and isinstance(decoded[1], list)
        and keys
        and len(decoded[1]) == len(keys)
        and all(_fits(value, column) for value, (column, _) in zip(decoded[1], keys))
    ):
        raise ValueError(
            f"{name}: not a cursor of this explorer listing sorted by {sort!r}; open page 1 again"
        )
    return decoded[1]


def _fits(value: Any, column: Any) -> bool:
    python_type = column.type.python_type
    if python_type is bool or isinstance(value, bool):
        return False
    return isinstance(value, python_type) and (not isinstance(value, str) or len(value) <= 4096)


def _seek(keys: Sequence[Tuple[Any, bool]], values: Sequence[Any], backward: bool) -> List[Any]:
    """Conditions selecting the rows strictly after ``values`` in the order ``keys`` (before when
    ``backward``), as consecutive runs: read the first one, then the next while the page is not full.

    Each is a row comparison over columns of one direction, which PostgreSQL turns into the start of the
    index scan. A sort with a descending lead and ascending tie-break (worst severity first) gives two runs:
    the rest of the current tie group, then the groups after it.
    """

    def beyond(columns, row, descending):
        return columns < row if descending != backward else columns > row

    lead = 1
    while lead < len(keys) and keys[lead][1] == keys[0][1]:
        lead += 1
    head = tuple_(*(c for c, _ in keys[:lead]))
    if lead == len(keys):
        return [beyond(head, tuple_(*values), keys[0][1])]
    rest = keys[lead:]
    if any(descending != rest[0][1] for _, descending in rest):
        raise ValueError("a sort may change direction once")  # no sort order here does
    same_group = and_(
        *(column == value for (column, _), value in zip(keys[:lead], values)),
        beyond(tuple_(*(c for c, _ in rest)), tuple_(*values[lead:]), rest[0][1]),
    )
    return [same_group, beyond(head, tuple_(*values[:lead]), keys[0][1])]


def run_query(
    session: Session,
    filters: ExplorerFilters,
    principal: Principal,
    page: int = 1,
    page_size: int = 50,
    sort: str = "-severity",
    after: Optional[str] = None,
    before: Optional[str] = None,
) -> ExplorerPage:
    """One page of running containers, then of pushed images no cluster runs, matching ``filters``
    that ``principal`` may see (``filters.running`` keeps one kind).

    ``after`` (the previous page's ``next_cursor``) or ``before`` (the next page's ``prev_cursor``) read the
    page's running containers from that row on in index order instead of past an OFFSET, so a deep page costs
    what page 1 does. ``page`` still numbers the page; the total stays exact.
    """
    check_paging(page, page_size)
    if after and before:
        raise ValueError("after and before: give one cursor, not both")
    keys = _sort_keys(sort)
    seek = None
    if after:
        seek = (decode_cursor(after, sort, "after"), False)
    elif before:
        seek = (decode_cursor(before, sort, "before"), True)
    offset = (page - 1) * page_size
    if filters.running is False:
        total, rows = _not_running_page(session, filters, principal, offset, page_size, sort)
        return ExplorerPage(rows=rows, total=total, page=page, page_size=page_size, sort=sort,
                            hidden_by_permissions=_hidden(session, filters, principal, total))
    conditions, visible = _conditions(session, filters, principal)
    # Exact total: the web explorer pages and exports by it.
    total = session.execute(running_count(conditions, visible)).scalar_one()
    conditions.append(or_(*visible))
    containers, rows = _running_page(
        session, filters, principal, conditions, keys, offset, page_size, total, seek
    )
    running = total
    if filters.running is None:
        # Images no cluster runs follow the running containers, paged as one list.
        rest, more = _not_running_page(
            session, filters, principal, max(0, offset - total), page_size - len(rows), sort
        )
        total, rows = total + rest, rows + more
    result = ExplorerPage(rows=rows, total=total, page=page, page_size=page_size, sort=sort,
                          hidden_by_permissions=_hidden(session, filters, principal, total))
    if containers and page > 1:
        result.prev_cursor = _cursor(sort, containers[0])
    if containers and len(rows) == len(containers) and offset + len(rows) < running:
        result.next_cursor = _cursor(sort, containers[-1])
    return result


def _hidden(session: Session, filters: ExplorerFilters, principal: Principal, total: int) -> bool:
    """Whether an empty answer hides rows the reader's organisations do not cover (asked only then, and only for
    a reader limited to some organisations: the same query as a reader of every organisation)."""
    if total or reads_every_organization(principal):
        return False
    return run_query(session, filters, EVERY_ORGANIZATION, page_size=1).total > 0


def _running_page(
    session: Session,
    filters: ExplorerFilters,
    principal: Principal,
    conditions: list,
    keys: Sequence[Tuple[Any, bool]],
    offset: int,
    page_size: int,
    total: int,
    seek: Optional[Tuple[List[Any], bool]],
) -> Tuple[List[RunningContainer], List[ExplorerRow]]:
    """(containers, rows) of one page: its ids first (read in index order, only ids carried past an OFFSET or
    from a seek cursor on), then its rows."""
    if seek is None and offset >= total:
        return [], []  # the page lies past the running containers: nothing to skip through
    backward = seek is not None and seek[1]
    # Going back, read the rows before the cursor in reverse order, then turn them around.
    query = select(RunningContainer.id).where(*conditions).order_by(
        *(c.desc() if d != backward else c for c, d in keys)
    )
    ids: List[int] = []
    if seek is None:
        ids = list(session.execute(query.offset(offset).limit(page_size)).scalars())
    else:
        for run in _seek(keys, seek[0], backward):
            ids += session.execute(query.where(run).limit(page_size - len(ids))).scalars()
            if len(ids) == page_size:
                break
    if backward:
        ids.reverse()
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
    trails = find_trails(session, digests, filters, principal)
    scans = _scanners(session, {row[1].scan_id for row in page_rows if row[1] is not None})
    return containers, [
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
