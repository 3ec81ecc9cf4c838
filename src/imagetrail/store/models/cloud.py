"""Cloud side tables: running containers and their exposure, vulnerability scans, remediation items.

Everything joins on image digests (``images.digest`` / ``pushes.digest`` on the pipeline side,
``image_relations`` for index <-> platform manifest). The explorer never aggregates raw findings:
``vulnerability_summaries`` holds one row per digest for the newest scan, maintained at scan ingest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, List, Optional, Tuple

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Select,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from imagetrail.store.db import Base, UTCDateTime
from imagetrail.store.models.pipeline import REF_LEN, ImageRelation, with_related

DIGEST_LEN = 71  # sha256:<64 hex>


class Cluster(Base):
    """A Kubernetes cluster as last synced; its containers are replaced whole on every sync."""

    __tablename__ = "clusters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    source: Mapped[str] = mapped_column(String(32))  # live | file
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime())
    collected_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    pod_count: Mapped[int] = mapped_column(Integer, default=0)
    container_count: Mapped[int] = mapped_column(Integer, default=0)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)


# The explorer's sort orders: each is its leading key, then the row identity. One index per order
# lets a page (even a deep one) be read in index order instead of sorting every container.
CONTAINER_IDENTITY = ("cluster_name", "namespace", "workload_name", "pod", "container", "id")


def sort_columns(leading: str) -> Tuple[str, ...]:
    """``leading`` then the identity, without repeating a column (the explorer orders the same way)."""
    return (leading, *(c for c in CONTAINER_IDENTITY if c != leading))


def _severity_order() -> Tuple[Any, ...]:
    """The "-severity" sort's index columns, worst first, then the identity (new clauses per index)."""
    return (text("max_severity DESC"), text("critical_count DESC"), text("high_count DESC"), *CONTAINER_IDENTITY)


class RunningContainer(Base):
    """One container (main, init, sidecar or ephemeral) of one pod, as last seen in its cluster.

    ``cluster_name`` and the vulnerability columns (``max_severity`` ... ``scan_id``) copy the
    cluster's name and the digest's ``vulnerability_summaries`` row, so the explorer filters, sorts
    and counts 100,000s of containers on this table alone. They are written at cluster sync and
    whenever a summary changes (``imagetrail.ingest.cloud``); ``refresh_container_columns`` rebuilds
    them after a bulk load that bypassed those paths.
    """

    __tablename__ = "running_containers"
    __table_args__ = (
        Index("ix_running_containers_registry_repository", "registry", "repository"),
        Index("ix_running_containers_scan_id", "scan_id"),  # --cve: the scans naming it, then containers
        Index("ix_running_containers_by_cluster", *CONTAINER_IDENTITY),
        Index("ix_running_containers_by_namespace", *sort_columns("namespace")),
        Index("ix_running_containers_by_workload", *sort_columns("workload_name")),
        Index("ix_running_containers_by_image", *sort_columns("image")),
        Index("ix_running_containers_by_digest", *sort_columns("digest")),
        Index("ix_running_containers_by_severity", *_severity_order()),
        # "Exposed AND high", the usual question: its count and page as index-only scans (migration 0013).
        Index(
            "ix_running_containers_exposed_by_severity",
            *_severity_order(),
            postgresql_include=["organization_ids", "digest"],
            postgresql_where=text("exposed IS true"),
            sqlite_where=text("exposed IS 1"),
        ),
        # A reader's count: the filled organisation copies alone, index-only (migration 0016).
        Index("ix_running_containers_organization_ids", "organization_ids"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    cluster_name: Mapped[str] = mapped_column(String(255))
    namespace: Mapped[str] = mapped_column(String(255))
    pod: Mapped[str] = mapped_column(String(255))
    workload_kind: Mapped[str] = mapped_column(String(64))  # Deployment, CronJob, StatefulSet, Pod...
    workload_name: Mapped[str] = mapped_column(String(255))
    owner_note: Mapped[Optional[str]] = mapped_column(
        Text
    )  # how the owner was derived, when not from objects
    container: Mapped[str] = mapped_column(String(255))
    container_kind: Mapped[str] = mapped_column(String(16))  # container | init | sidecar | ephemeral
    image: Mapped[str] = mapped_column(String(REF_LEN))  # as in the pod spec
    # "registry" is reserved on declarative classes, so the attribute is registry_host.
    registry_host: Mapped[str] = mapped_column("registry", String(255))
    repository: Mapped[str] = mapped_column(String(512))
    digest: Mapped[Optional[str]] = mapped_column(String(DIGEST_LEN))  # running manifest digest
    digest_error: Mapped[Optional[str]] = mapped_column(Text)  # why the digest is unknown
    exposed: Mapped[bool] = mapped_column(Boolean, default=False)
    exposure: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{"reason":..., "address":...}]
    # Copied from vulnerability_summaries (0 / None when the digest has no scan).
    max_severity: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    critical_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    high_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_fixable_severity: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    scan_id: Mapped[Optional[int]] = mapped_column(Integer)  # no FK: scans are never deleted alone
    # The digest's digest_organizations ids as ",1,7," ("," for none); NULL until filled after a sync, and
    # ORGANIZATION_COPY_FULL past ORGANIZATION_COPY_MAX organisations. Readers limited to some organisations
    # filter on it (imagetrail.queries.visibility.container_condition_parts).
    organization_ids: Mapped[Optional[str]] = mapped_column(Text)


# A digest pushed by more organisations than this has no copy, but this marker: its readers look it up in
# digest_organizations, as for a copy not filled yet. Two indexes hold the copy, and a PostgreSQL index entry
# holds 2,704 bytes at most (compressed): unbounded, a copy of 1,000 four-digit ids failed the row's write, and
# with it the sync or the ingest batch that wrote it.
ORGANIZATION_COPY_MAX = 100
ORGANIZATION_COPY_FULL = "*"


def running_ways(digest: Any) -> List[Any]:
    """Three EXISTS, any of which means a cluster runs ``digest``: itself, a platform manifest of it, or an index
    listing it. ``NOT`` each, AND-ed, is what PostgreSQL runs as anti-joins (``NOT IN`` a list of running digests
    meant the same but probes the whole list for every row once it outgrows work_mem)."""
    c, r = RunningContainer, ImageRelation
    return [
        select(c.id).where(c.digest == digest).exists(),
        select(r.id).join(c, c.digest == r.manifest_digest).where(r.index_digest == digest).exists(),
        select(r.id).join(c, c.digest == r.index_digest).where(r.manifest_digest == digest).exists(),
    ]


def runs_somewhere(digest: Any) -> Any:
    """A condition: a cluster runs ``digest``, itself or an index / platform-manifest relative of it."""
    return or_(*running_ways(digest))


def running_digests() -> Select:
    """Every digest a cluster runs, with its index / platform-manifest relatives (``runs_somewhere`` as a list)."""
    return with_related(select(RunningContainer.digest).where(RunningContainer.digest.is_not(None)))


class PushedDigest(Base):
    """A digest some reported run pushed, and whether a cluster runs it (``runs_somewhere``).

    The explorer lists and counts the images no cluster runs from here instead of checking every push against
    the running containers. ``running`` is NULL when unknown: report ingest adds digests so, a sync or a new
    relation sets the digests it may change back to NULL, and ``imagetrail.ingest.running_images`` fills them
    after the sync (readers check a NULL row themselves, so the listing is exact either way).
    """

    __tablename__ = "pushed_digests"
    __table_args__ = (Index("ix_pushed_digests_running_digest", "running", "digest"),)

    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), primary_key=True)
    running: Mapped[Optional[bool]] = mapped_column(Boolean)


class ImageScan(Base):
    """One image's results from one scanner report (a Trivy k8s report holds many images)."""

    __tablename__ = "image_scans"
    __table_args__ = (Index("ux_image_scans_content_sha256", "content_sha256", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scanner: Mapped[str] = mapped_column(String(32))  # trivy | grype
    scanner_version: Mapped[Optional[str]] = mapped_column(String(64))
    db_version: Mapped[Optional[str]] = mapped_column(String(128))
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    file_name: Mapped[str] = mapped_column(String(REF_LEN))
    artifact: Mapped[Optional[str]] = mapped_column(String(REF_LEN))  # image reference as scanned
    digests: Mapped[list[Any]] = mapped_column(JSON)  # every manifest digest the report names
    finding_count: Mapped[int] = mapped_column(Integer, default=0)
    # What the scan says about this image, hashed (imagetrail.ingest.cloud.scan_content_hash): the
    # same scan sent again is recognised instead of stored twice. NULL for scans stored before 0007.
    content_sha256: Mapped[Optional[str]] = mapped_column(String(64))


class ScanDigest(Base):
    """Which digests a scan covers: the join key for history ("every scan of this digest")."""

    __tablename__ = "scan_digests"
    __table_args__ = (Index("ix_scan_digests_digest_scan", "digest", "scan_id"),)

    scan_id: Mapped[int] = mapped_column(ForeignKey("image_scans.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), primary_key=True)


class Finding(Base):
    __tablename__ = "vulnerability_findings"
    __table_args__ = (
        Index("ix_findings_scan", "scan_id"),
        Index("ix_findings_vulnerability_scan", "vulnerability_id", "scan_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("image_scans.id", ondelete="CASCADE"))
    vulnerability_id: Mapped[str] = mapped_column(String(128))
    package: Mapped[str] = mapped_column(String(512))
    installed_version: Mapped[Optional[str]] = mapped_column(String(255))
    fixed_version: Mapped[Optional[str]] = mapped_column(String(512))
    severity: Mapped[int] = mapped_column(SmallInteger)  # imagetrail.severity rank


class VulnerabilitySummary(Base):
    """Per digest: the counts of its newest scan, so queries never aggregate raw findings.

    ``via_digest`` is the digest the scan named; it differs from ``digest`` when the summary was
    carried over an image_relations edge (an index inherits its platform manifest's scan and back).
    """

    __tablename__ = "vulnerability_summaries"
    # Worst first, as the explorer pages images no cluster runs (migration 0015); its leading column serves the
    # severity filters too.
    __table_args__ = (Index("ix_vulnerability_summaries_by_severity", text("max_severity DESC"), text("critical DESC"),
                            text("high DESC"), "digest"),)

    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), primary_key=True)
    via_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    scan_id: Mapped[int] = mapped_column(ForeignKey("image_scans.id", ondelete="CASCADE"))
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    critical: Mapped[int] = mapped_column(Integer, default=0)
    high: Mapped[int] = mapped_column(Integer, default=0)
    medium: Mapped[int] = mapped_column(Integer, default=0)
    low: Mapped[int] = mapped_column(Integer, default=0)
    unknown: Mapped[int] = mapped_column(Integer, default=0)
    max_severity: Mapped[int] = mapped_column(SmallInteger, default=0)  # 0 when there is no finding
    max_fixable_severity: Mapped[int] = mapped_column(SmallInteger, default=0)
    top: Mapped[list[Any]] = mapped_column(JSON, default=list)  # top CVEs with fixed versions


class RemediationItem(Base):
    """A work item created for one image and one set of CVEs: never created twice."""

    __tablename__ = "remediation_items"
    __table_args__ = (UniqueConstraint("digest", "cve_set_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    cve_set_hash: Mapped[str] = mapped_column(String(64))
    cve_ids: Mapped[list[Any]] = mapped_column(JSON)
    organization: Mapped[str] = mapped_column(String(255))
    project: Mapped[str] = mapped_column(String(255))
    work_item_id: Mapped[int] = mapped_column(Integer)
    work_item_url: Mapped[Optional[str]] = mapped_column(String(REF_LEN))
    work_item_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Migration 0009: azure-devops (project: the Azure DevOps project) | github (project: owner/repo,
    # work_item_id: the issue number); the pipeline and image repository the item was filed for.
    tracker: Mapped[str] = mapped_column(String(32), default="azure-devops", server_default="azure-devops")
    pipeline_id: Mapped[Optional[int]] = mapped_column(Integer, index=True)
    image_repository: Mapped[Optional[str]] = mapped_column(String(REF_LEN))
