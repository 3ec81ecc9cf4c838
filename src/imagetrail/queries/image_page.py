"""What the web trail page shows beside the pushes: the workloads running an image and its newest scan.

Callers decide visibility (``imagetrail.web.trail_source``): running workloads name no organisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Optional, Set

from sqlalchemy import select
from sqlalchemy.orm import Session

from imagetrail.store.models.cloud import Cluster, ImageScan, RunningContainer, VulnerabilitySummary

MAX_WORKLOADS = 200


@dataclass(frozen=True)
class RunningWorkload:
    cluster: str
    namespace: str
    kind: str
    name: str
    container: str
    digest: Optional[str]
    exposed: bool
    exposure: List[Dict[str, Any]]


@dataclass(frozen=True)
class NewestScan:
    digest: str
    critical: int
    high: int
    medium: int
    low: int
    top: List[Dict[str, Any]]
    scanner: Optional[str]
    scanned_at: Optional[datetime]


def running_workloads(session: Session, digests: Set[str]) -> List[RunningWorkload]:
    """Containers running any of ``digests``, exposed first, then by cluster, namespace and workload."""
    rows = session.execute(
        select(RunningContainer, Cluster.name)
        .join(Cluster, Cluster.id == RunningContainer.cluster_id)
        .where(RunningContainer.digest.in_(sorted(digests)))
        .order_by(RunningContainer.exposed.desc(), Cluster.name, RunningContainer.namespace,
                  RunningContainer.workload_name)
        .limit(MAX_WORKLOADS)
    ).all()
    return [RunningWorkload(cluster, c.namespace, c.workload_kind, c.workload_name, c.container, c.digest,
                            c.exposed, list(c.exposure or [])) for c, cluster in rows]


def newest_scan(session: Session, digests: Set[str], digest: str) -> Optional[NewestScan]:
    """The scan summary of ``digest`` itself if it has one, else the newest of its relatives."""
    rows = session.execute(
        select(VulnerabilitySummary, ImageScan.scanner)
        .join(ImageScan, ImageScan.id == VulnerabilitySummary.scan_id)
        .where(VulnerabilitySummary.digest.in_(sorted(digests)))
    ).all()
    if not rows:
        return None
    # the digest's own scan first, then the newest of a relative's
    summary, scanner = max(((summary, scanner) for summary, scanner in rows),
                           key=lambda found: (found[0].digest == digest, found[0].scanned_at))
    return NewestScan(summary.digest, summary.critical, summary.high, summary.medium, summary.low,
                      [dict(item) for item in summary.top or []], scanner, summary.scanned_at)
