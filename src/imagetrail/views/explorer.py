"""Explorer rows and pages: running containers and pushed images with exposure, vulnerabilities and trail."""

from __future__ import annotations

from datetime import datetime
from typing import List, Optional

from pydantic import BaseModel, Field

from imagetrail.views.trail import Trail


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
    # Nothing matched that the reader may read, but rows in organisations it may not read match (never which).
    hidden_by_permissions: bool = False
    # Seek cursors (see run_query): the page after this one starts after next_cursor, the page before ends
    # before prev_cursor. None where the neighbouring page is reached by its number instead.
    next_cursor: Optional[str] = Field(default=None, exclude=True)
    prev_cursor: Optional[str] = Field(default=None, exclude=True)
