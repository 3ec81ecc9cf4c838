"""Coverage: which running containers no pipeline report explains (gaps), and which clusters, registries,
projects and scanners report. Gaps belong to no organisation, so only readers granted every organisation see them."""

from __future__ import annotations

from typing import List, Optional, Set

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.queries.reconcile_status import reconcile_status
from imagetrail.queries.trail import pushes_joined
from imagetrail.queries.visibility import organization_condition, reads_every_organization
from imagetrail.reference import normalize_registry
from imagetrail.store.models.cloud import Cluster, ImageScan, RunningContainer
from imagetrail.store.models.pipeline import DigestOrganization, ImageReference, Organization, Project, Push
from imagetrail.views.coverage import (
    ClusterCoverage,
    CoverageSummary,
    Gap,
    GapPage,
    ProjectCoverage,
    RegistryCoverage,
    ScannerCoverage,
)
from imagetrail.views.filters import ExplorerFilters, check_paging


def _untraced() -> Select:
    # A digest some run pushed, itself or as an index / platform relative, has a digest_organizations row.
    traced = select(DigestOrganization.digest)
    return (
        select(RunningContainer, Cluster.name)
        .join(Cluster, Cluster.id == RunningContainer.cluster_id)
        .where(or_(RunningContainer.digest.is_(None), RunningContainer.digest.not_in(traced)))
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
    check_paging(page, page_size)
    if not reads_every_organization(principal):
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
    everything = reads_every_organization(principal)
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
    org_condition = [organization_condition(principal)]
    registry_rows = session.execute(
        pushes_joined(ImageReference.registry_host, func.count(Push.id), func.max(Push.pushed_at))
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
