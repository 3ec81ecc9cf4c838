"""Writing the cloud side: cluster inventories, scans and their summaries, digest relations.

Each function runs inside the caller's transaction (``db.transaction``): an inventory replaces
the cluster's previous view whole, a scan file is stored whole, or nothing changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from sqlalchemy import JSON, any_, delete, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from imagetrail import severity as sev
from imagetrail.gc_pause import paused_gc
from imagetrail.ingest.digest_organizations import (
    fill_container_organizations,
    lock_container_organizations,
    refresh_digest_organizations,
)
from imagetrail.ingest.running_images import fill_running, mark_unknown
from imagetrail.inventory import Changes, Container, Exposure, Inventory, PodContainers, PodRef
from imagetrail.parsers.scans import ParsedImage, ParsedReport
from imagetrail.reference import registry_and_repository
from imagetrail.store.models.cloud import (
    Cluster,
    Finding,
    ImageScan,
    RunningContainer,
    ScanDigest,
    VulnerabilitySummary,
)
from imagetrail.store.models.pipeline import ImageRelation

TOP_CVES = 5
_INSERT_BATCH = 5000
_IN_BATCH = 500


def _in_batches(session: Session, column, values: Set[str]) -> List:
    """``column IN values`` as one condition per batch of values.

    PostgreSQL gets one array (``= ANY(...)``) whatever the count: a 50,000-pod sync
    names ~50,000 digests, and 100 statements of 500 expanded parameters cost seconds in
    SQLAlchemy's compiler and psycopg's query parser. Elsewhere (SQLite's parameter limit)
    the values go in batches of ``_IN_BATCH``.
    """
    wanted = sorted(values)
    if not wanted:
        return []
    if session.get_bind().dialect.name == "postgresql":
        # One text parameter split by the server: binding a 50,000-item list adapts each item.
        return [column == any_(func.string_to_array(",".join(wanted), ","))]
    return [column.in_(wanted[start : start + _IN_BATCH]) for start in range(0, len(wanted), _IN_BATCH)]


# --- inventory --------------------------------------------------------------------------------


# The contract is imagetrail.inventory (the CLI builds the same models); these are its names here.
ExposureIn = Exposure
ContainerIn = Container
InventoryIn = Inventory


class EmptyInventoryRefused(ValueError):
    """An inventory with no containers would wipe a cluster that had some; the message says what to do."""


@dataclass
class InventoryResult:
    cluster: str
    containers: int
    exposed: int
    replaced: int  # containers of the previous view that were removed


def fill_after_sync(session: Session, cluster: str) -> int:
    """After a sync committed, in the caller's next transaction: the organisations of its new containers (their
    ``organization_ids``) and whether the pushed digests it may have changed run. Until then readers see both
    through slower exact lookups. Returns the containers filled."""
    fill_running(session)
    cluster_id = session.execute(select(Cluster.id).where(Cluster.name == cluster)).scalar_one_or_none()
    return 0 if cluster_id is None else fill_container_organizations(session, cluster_id)


def _began_sync(session: Session) -> None:
    """First in a sync's transaction, before it writes any row: see ``imagetrail.ingest.running_images``."""
    lock_container_organizations(session)


def replace_inventory(
    session: Session, inventory: Inventory, now: Optional[datetime] = None
) -> InventoryResult:
    """Replace the cluster's running containers with ``inventory`` (a gone workload stops being reported)."""
    with paused_gc():  # one row dict per container: tens of thousands for a big cluster
        return _replace_inventory(session, inventory, now or datetime.now(timezone.utc))


def _replace_inventory(session: Session, inventory: Inventory, now: datetime) -> InventoryResult:
    _began_sync(session)
    cluster = session.execute(select(Cluster).where(Cluster.name == inventory.cluster)).scalar_one_or_none()
    if cluster is None:
        cluster = Cluster(name=inventory.cluster, source=inventory.source, synced_at=now)
        session.add(cluster)
        session.flush()
    if not inventory.containers and not inventory.allow_empty and cluster.container_count:
        # A kubeconfig for the wrong cluster or a file with no pods looks exactly like this.
        raise EmptyInventoryRefused(
            f"cluster {cluster.name} has {cluster.container_count} running container(s) and this inventory "
            "has none; nothing was changed. If the cluster really is empty, send it with allow_empty "
            "(imagetrail k8s sync --allow-empty)"
        )
    gone = session.execute(
        delete(RunningContainer.__table__).where(
            RunningContainer.cluster_name == cluster.name, RunningContainer.cluster_id == cluster.id
        ).returning(RunningContainer.digest)
    ).scalars().all()
    removed = len(gone)
    cluster.source = inventory.source
    cluster.synced_at = now
    cluster.collected_at = inventory.collected_at
    cluster.pod_count = inventory.pods
    cluster.container_count = len(inventory.containers)
    cluster.warnings = inventory.warnings
    rows, exposed = _container_rows(session, cluster, inventory.containers)
    _bulk_insert(session, RunningContainer.__table__, rows)
    _running_changed(session, gone, rows)
    return InventoryResult(
        cluster=inventory.cluster, containers=len(rows), exposed=exposed, replaced=removed or 0
    )


def _container_rows(session: Session, cluster: Cluster, containers: Sequence[Container]) -> Tuple[List[dict], int]:
    """running_containers rows for ``containers`` (with their vulnerability columns) and how many are exposed."""
    digests = {item.digest for item in containers if item.digest}
    # Relations the collector recorded after a scan arrived: carry those summaries to what runs now,
    # before the rows are written so they are written with their vulnerability columns.
    propagate_summaries(session, digests)
    vulnerabilities = _container_columns(session, digests)
    names: Dict[str, Tuple[str, str]] = {}  # most pods share a few images: parse each once
    rows = []
    exposed = 0
    for item in containers:
        name = names.get(item.image)
        if name is None:
            name = names[item.image] = registry_and_repository(item.image)
        exposure = [{"reason": e.reason, "address": e.address} for e in item.exposure]
        exposed += bool(exposure)
        rows.append(
            {
                "cluster_id": cluster.id,
                "cluster_name": cluster.name,
                "namespace": item.namespace,
                "pod": item.pod,
                "workload_kind": item.workload_kind,
                "workload_name": item.workload_name,
                "owner_note": item.owner_note,
                "container": item.container,
                "container_kind": item.container_kind,
                "image": item.image,
                "registry": name[0],
                "repository": name[1],
                "digest": item.digest,
                "digest_error": item.digest_error if item.digest is None else None,
                "exposed": bool(exposure),
                "exposure": exposure,
                **vulnerabilities.get(item.digest or "", _NO_VULNERABILITIES),
            }
        )
    return rows, exposed


# --- incremental changes (imagetrail k8s sync --watch) -------------------------------------------

PodIn = PodRef
PodContainersIn = PodContainers
ChangesIn = Changes


class UnknownCluster(LookupError):
    """Changes for a cluster never synced in full; the message says what to send first."""


@dataclass
class ChangesResult:
    cluster: str
    containers: int  # the cluster's running containers after the change
    pods_changed: int
    pods_removed: int


def _running_changed(session: Session, gone: Sequence[Optional[str]], rows: Sequence[dict]) -> None:
    """Digests that stopped or started running here (and their relatives) may have changed ``running``."""
    before, after = {d for d in gone if d}, {row["digest"] for row in rows if row["digest"]}
    mark_unknown(session, before ^ after)


def apply_changes(session: Session, changes: Changes, now: Optional[datetime] = None) -> ChangesResult:
    """Replace the containers of each changed pod and drop removed pods, in the caller's transaction."""
    _began_sync(session)
    cluster = session.execute(select(Cluster).where(Cluster.name == changes.cluster)).scalar_one_or_none()
    if cluster is None:
        raise UnknownCluster(
            f"cluster {changes.cluster} has no full inventory yet; send one first "
            "(POST /v1/clusters/{cluster}/inventory, as imagetrail k8s sync does before it watches)"
        )
    table = RunningContainer.__table__
    touched = sorted({(p.namespace, p.pod) for p in [*changes.pods, *changes.removed]})
    gone: List[Optional[str]] = []
    for start in range(0, len(touched), _IN_BATCH):
        gone += session.execute(
            delete(table).where(
                table.c.cluster_id == cluster.id,
                tuple_(table.c.namespace, table.c.pod).in_(touched[start : start + _IN_BATCH]),
            ).returning(table.c.digest)
        ).scalars().all()
    containers = [c for pod in changes.pods for c in pod.containers]
    rows, _ = _container_rows(session, cluster, containers)
    _bulk_insert(session, table, rows)
    _running_changed(session, gone, rows)
    cluster.synced_at = now or datetime.now(timezone.utc)
    if changes.collected_at is not None:
        cluster.collected_at = changes.collected_at
    cluster.container_count = session.execute(
        select(func.count()).select_from(table).where(table.c.cluster_id == cluster.id)
    ).scalar_one()
    cluster.pod_count = session.execute(
        select(func.count()).select_from(
            select(table.c.namespace, table.c.pod).where(table.c.cluster_id == cluster.id).distinct().subquery()
        )
    ).scalar_one()
    return ChangesResult(
        cluster=cluster.name,
        containers=cluster.container_count,
        pods_changed=len(changes.pods),
        pods_removed=len(changes.removed),
    )


# --- the vulnerability columns copied onto running_containers -----------------------------------

_NO_VULNERABILITIES = {
    "max_severity": sev.NONE,
    "critical_count": 0,
    "high_count": 0,
    "max_fixable_severity": sev.NONE,
    "scan_id": None,
}


def _copied_columns(summary_values: dict) -> dict:
    return {
        "max_severity": summary_values["max_severity"],
        "critical_count": summary_values["critical"],
        "high_count": summary_values["high"],
        "max_fixable_severity": summary_values["max_fixable_severity"],
        "scan_id": summary_values["scan_id"],
    }


def _container_columns(session: Session, digests: Set[str]) -> Dict[str, dict]:
    """The running_containers vulnerability columns for each digest that has a summary."""
    summary = VulnerabilitySummary
    columns = (
        summary.digest,
        summary.max_severity,
        summary.critical,
        summary.high,
        summary.max_fixable_severity,
        summary.scan_id,
    )
    found: Dict[str, dict] = {}
    for condition in _in_batches(session, summary.digest, digests):
        for row in session.execute(select(*columns).where(condition)):
            found[row[0]] = dict(zip(_NO_VULNERABILITIES, row[1:]))
    return found


def refresh_container_columns(session: Session) -> int:
    """Rewrite every running container's copied columns from ``clusters`` and ``vulnerability_summaries``.

    The write paths keep them current; this is for data bulk-loaded around them (benchmarks, restores).
    """
    containers = RunningContainer.__table__
    summary = VulnerabilitySummary.__table__

    def from_summary(column):
        return select(column).where(summary.c.digest == containers.c.digest).scalar_subquery()

    return session.execute(
        update(containers).values(
            cluster_name=select(Cluster.name).where(Cluster.id == containers.c.cluster_id).scalar_subquery(),
            max_severity=func.coalesce(from_summary(summary.c.max_severity), sev.NONE),
            critical_count=func.coalesce(from_summary(summary.c.critical), 0),
            high_count=func.coalesce(from_summary(summary.c.high), 0),
            max_fixable_severity=func.coalesce(from_summary(summary.c.max_fixable_severity), sev.NONE),
            scan_id=from_summary(summary.c.scan_id),
        )
    ).rowcount


def _bulk_insert(session: Session, table, rows: List[dict]) -> None:
    """Insert many rows in the session's transaction: COPY on PostgreSQL, batched INSERTs elsewhere.

    A 50,000-pod cluster is ~60,000 rows per sync; COPY is several times faster than even
    multi-row INSERTs there. Core (not ORM) inserts elsewhere: the ORM bulk path groups rows by
    which columns are None and, with interleaved None patterns, falls back to tiny batches.
    """
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        columns = list(rows[0])
        json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
        names = ", ".join(f'"{c}"' for c in columns)
        # JSON values go as text the server parses: json.dumps (C) is several times cheaper per
        # row than psycopg's Jsonb adapter, and most containers carry the same empty list.
        encoder = json.JSONEncoder(separators=(",", ":"))

        def encode(value):
            return "[]" if value == [] else encoder.encode(value)

        with connection.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([encode(row[c]) if c in json_columns else row[c] for c in columns])
        return
    for start in range(0, len(rows), _INSERT_BATCH):
        session.execute(insert(table), rows[start : start + _INSERT_BATCH])


# --- scans ------------------------------------------------------------------------------------


@dataclass
class ImageScanResult:
    scan_id: int
    artifact: Optional[str]
    digests: List[str]
    findings: int
    latest: bool  # False when a newer scan of the same digest was already stored
    duplicate: bool = False  # the same scan was already stored (as scan_id): nothing was added


@dataclass
class ScanResult:
    file_name: str
    format: str
    scanner: str
    images: List[ImageScanResult]
    warnings: List[str]


def _top(findings: Sequence[Finding]) -> List[dict]:
    ranked = sorted(findings, key=lambda f: (-f.severity, not f.fixed_version, f.vulnerability_id, f.package))
    top, seen = [], set()
    for finding in ranked:
        if finding.vulnerability_id in seen:
            continue
        seen.add(finding.vulnerability_id)
        top.append(
            {
                "id": finding.vulnerability_id,
                "severity": sev.NAMES[finding.severity],
                "package": finding.package,
                "installed_version": finding.installed_version,
                "fixed_version": finding.fixed_version,
            }
        )
        if len(top) == TOP_CVES:
            break
    return top


def _summary_values(scan: ImageScan, findings: Sequence[Finding]) -> dict:
    counts = {sev.CRITICAL: 0, sev.HIGH: 0, sev.MEDIUM: 0, sev.LOW: 0, sev.UNKNOWN: 0}
    max_fixable = 0
    for finding in findings:
        counts[finding.severity] = counts.get(finding.severity, 0) + 1
        if finding.fixed_version:
            max_fixable = max(max_fixable, finding.severity)
    return {
        "scan_id": scan.id,
        "scanned_at": scan.scanned_at,
        "critical": counts[sev.CRITICAL],
        "high": counts[sev.HIGH],
        "medium": counts[sev.MEDIUM],
        "low": counts[sev.LOW],
        "unknown": counts[sev.UNKNOWN],
        "max_severity": max((f.severity for f in findings), default=sev.NONE),
        "max_fixable_severity": max_fixable,
        "top": _top(findings),
    }


def _newer(candidate: Tuple[datetime, bool], current: Optional[VulnerabilitySummary]) -> bool:
    """Newest scan wins; at the same scan time a direct scan beats one carried over a relation.
    Times are aware (``UTCDateTime``), so offsets compare correctly."""
    if current is None:
        return True
    return candidate >= (current.scanned_at, current.via_digest == current.digest)


def scan_content_hash(report: ParsedReport, image: ParsedImage) -> str:
    """SHA-256 of what ``report`` says about ``image``: the same scan sent again hashes the same.
    The file name and the time it arrived are left out; a report without a scan time hashes
    without one."""
    scanned_at = report.scanned_at.astimezone(timezone.utc).isoformat() if report.scanned_at else None
    content = {
        "format": report.format, "scanner": report.scanner, "scanner_version": report.scanner_version,
        "db_version": report.db_version, "scanned_at": scanned_at, "artifact": image.artifact,
        "digests": sorted(image.digests),
        "findings": sorted([f.vulnerability_id, f.package, f.installed_version or "", f.fixed_version or "",
                            f.severity] for f in image.findings),
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _stored_copy(session: Session, content_sha256: str, image: ParsedImage) -> Optional[ImageScanResult]:
    scan = session.execute(select(ImageScan).where(ImageScan.content_sha256 == content_sha256)).scalar_one_or_none()
    if scan is None:
        return None
    current = session.scalar(select(func.count()).select_from(VulnerabilitySummary).where(
        VulnerabilitySummary.scan_id == scan.id, VulnerabilitySummary.digest.in_(image.digests)))
    return ImageScanResult(scan_id=scan.id, artifact=image.artifact, digests=image.digests,
                           findings=scan.finding_count, latest=bool(current), duplicate=True)


def _put_summary(session: Session, digest: str, via: str, values: dict) -> bool:
    current = session.get(VulnerabilitySummary, digest)
    if not _newer((values["scanned_at"], via == digest), current):
        return False
    if current is None:
        session.add(VulnerabilitySummary(digest=digest, via_digest=via, **values))
    else:
        current.via_digest = via
        for key, value in values.items():
            setattr(current, key, value)
    containers = RunningContainer.__table__
    session.execute(update(containers).where(containers.c.digest == digest).values(**_copied_columns(values)))
    return True


def _store_image(
    session: Session,
    report: ParsedReport,
    image: ParsedImage,
    file_name: str,
    scanned_at: datetime,
    now: datetime,
) -> ImageScanResult:
    content_sha256 = scan_content_hash(report, image)
    stored = _stored_copy(session, content_sha256, image)
    if stored is not None:
        return stored
    scan = ImageScan(
        content_sha256=content_sha256,
        scanner=report.scanner,
        scanner_version=report.scanner_version,
        db_version=report.db_version,
        scanned_at=scanned_at,
        received_at=now,
        file_name=file_name[:1024],
        artifact=(image.artifact or "")[:1024] or None,
        digests=image.digests,
        finding_count=len(image.findings),
    )
    session.add(scan)
    session.flush()
    session.execute(insert(ScanDigest), [{"scan_id": scan.id, "digest": d} for d in image.digests])
    findings = [
        Finding(
            scan_id=scan.id,
            vulnerability_id=f.vulnerability_id[:128],
            package=f.package[:512],
            installed_version=(f.installed_version or "")[:255] or None,
            fixed_version=(f.fixed_version or "")[:512] or None,
            severity=f.severity,
        )
        for f in image.findings
    ]
    if findings:
        session.execute(
            insert(Finding.__table__),
            [
                {
                    "scan_id": f.scan_id,
                    "vulnerability_id": f.vulnerability_id,
                    "package": f.package,
                    "installed_version": f.installed_version,
                    "fixed_version": f.fixed_version,
                    "severity": f.severity,
                }
                for f in findings
            ],
        )
    values = _summary_values(scan, findings)
    latest = False
    for digest in image.digests:
        latest |= _put_summary(session, digest, digest, values)
    return ImageScanResult(
        scan_id=scan.id, artifact=image.artifact, digests=image.digests, findings=len(findings), latest=latest
    )


def ingest_scan(
    session: Session, report: ParsedReport, file_name: str, now: Optional[datetime] = None
) -> ScanResult:
    """Store every image of a parsed report, its findings and (when newest) its per-digest summary.

    A report without a scan time (older Trivy JSON has no CreatedAt) is dated when it was received.
    """
    now = now or datetime.now(timezone.utc)
    scanned_at = report.scanned_at or now
    # Before any running_containers row is written: the relations below may edit their organisations.
    lock_container_organizations(session)
    results = [
        _store_image(session, report, image, file_name, image.scanned_at or scanned_at, now)
        for image in report.images
    ]
    relations = [rel for image in report.images for rel in image.relations]
    if relations:
        record_relations(session, relations, source="scanner", now=now)
    session.flush()
    propagate_summaries(session, {d for image in report.images for d in image.digests})
    return ScanResult(
        file_name=file_name,
        format=report.format,
        scanner=report.scanner,
        images=results,
        warnings=report.warnings,
    )


# --- digest relations -------------------------------------------------------------------------


def record_relations(
    session: Session,
    relations: Iterable[Tuple[str, str, Optional[str], Optional[str]]],
    source: str,
    now: Optional[datetime] = None,
    variant: Optional[Dict[str, str]] = None,
) -> int:
    """Add index -> platform manifest edges not yet known; returns how many were new."""
    now = now or datetime.now(timezone.utc)
    wanted = {}
    for index_digest, manifest_digest, os_name, architecture in relations:
        if index_digest != manifest_digest:
            wanted[(index_digest, manifest_digest)] = (os_name, architecture)
    if not wanted:
        return 0
    known: Set[Tuple[str, str]] = set()
    indexes = sorted({k[0] for k in wanted})
    for start in range(0, len(indexes), 500):
        known.update(
            tuple(row)
            for row in session.execute(
                select(ImageRelation.index_digest, ImageRelation.manifest_digest).where(
                    ImageRelation.index_digest.in_(indexes[start : start + 500])
                )
            ).all()
        )
    new = [key for key in wanted if key not in known]
    if new:  # before propagate_summaries writes running_containers rows
        lock_container_organizations(session)
    for index_digest, manifest_digest in new:
        os_name, architecture = wanted[(index_digest, manifest_digest)]
        session.add(
            ImageRelation(
                index_digest=index_digest,
                manifest_digest=manifest_digest,
                os=os_name,
                architecture=architecture,
                variant=(variant or {}).get(manifest_digest),
                source=source,
                recorded_at=now,
            )
        )
    session.flush()
    propagate_summaries(session, {d for key in new for d in key})
    # A new edge shows each side to the organisations that pushed the other (the explorer's visibility), and
    # makes each side run where the other runs.
    refresh_digest_organizations(session, {d for key in new for d in key})
    mark_unknown(session, {d for key in new for d in key}, relatives=False)
    return len(new)


def propagate_summaries(session: Session, digests: Set[str]) -> int:
    """Carry direct scan summaries one hop over image_relations (index <-> platform manifest)."""
    if not digests:
        return 0
    edges: Set[Tuple[str, str]] = set()
    relation = ImageRelation
    for column in (relation.index_digest, relation.manifest_digest):
        for condition in _in_batches(session, column, digests):
            edges.update(
                tuple(row)
                for row in session.execute(
                    select(relation.index_digest, relation.manifest_digest).where(condition)
                )
            )
    changed = 0
    for index_digest, manifest_digest in sorted(edges):
        for source, target in ((manifest_digest, index_digest), (index_digest, manifest_digest)):
            summary = session.get(VulnerabilitySummary, source)
            if summary is None or summary.via_digest != source:
                continue  # only direct scans are carried, and only one hop
            values = {
                k: getattr(summary, k)
                for k in (
                    "scan_id",
                    "scanned_at",
                    "critical",
                    "high",
                    "medium",
                    "low",
                    "unknown",
                    "max_severity",
                    "max_fixable_severity",
                    "top",
                )
            }
            changed += _put_summary(session, target, source, values)
    return changed
