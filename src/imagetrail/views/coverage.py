"""The coverage answers: which running containers have no trail and why, and how fresh each source is (clusters,
registries, projects, scanners, the collectors' kept reports)."""

from __future__ import annotations

from datetime import datetime
from typing import List, Optional

from pydantic import BaseModel, Field


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


class ReconcileSourceStatus(BaseModel):
    system: str
    organization: str
    last_run_at: Optional[datetime]
    pending: int
    reconciled: int
    last_error: Optional[str]


class ReconcileStatus(BaseModel):
    """Reports collectors kept while they could not deliver: how many wait, how many were stored."""

    last_run_at: Optional[datetime] = None
    pending: int = 0
    reconciled: int = 0
    sources: List[ReconcileSourceStatus] = []


class CoverageSummary(BaseModel):
    clusters: List[ClusterCoverage]
    registries: List[RegistryCoverage]
    projects: List[ProjectCoverage]
    scanners: List[ScannerCoverage]
    # Reports collectors kept while they could not deliver: pending, reconciled, last reconcile.
    reconcile: ReconcileStatus = Field(default_factory=ReconcileStatus)
