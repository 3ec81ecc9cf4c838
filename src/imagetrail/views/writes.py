"""The answers of the write routes: a collector report stored, a cluster's inventory or changes, a scan report,
image relations."""

from __future__ import annotations

from typing import List, Optional

from pydantic import BaseModel


class IngestAnswer(BaseModel):
    status: str  # created | duplicate
    reportId: str
    pushes: int


class InventoryAnswer(BaseModel):
    cluster: str
    containers: int
    exposed: int
    replaced: int


class ChangesAnswer(BaseModel):
    cluster: str
    containers: int
    pods_changed: int
    pods_removed: int


class ImageScanAnswer(BaseModel):
    scan_id: int
    artifact: Optional[str]
    digests: List[str]
    findings: int
    latest: bool
    duplicate: bool = False  # already stored as scan_id: nothing was added


class ScanAnswer(BaseModel):
    file_name: str
    format: str
    scanner: str
    images: List[ImageScanAnswer]
    warnings: List[str]


class RelationsAnswer(BaseModel):
    received: int
    new: int
