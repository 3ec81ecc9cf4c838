"""The answer of "pipelines that pushed vulnerable images" (``GET /v1/query/pipelines``)."""

from __future__ import annotations

from datetime import datetime
from typing import List, Optional

from pydantic import BaseModel


class PipelineVulnerabilities(BaseModel):
    organization: str
    project: str
    pipeline: Optional[str] = None
    pipeline_id: Optional[str] = None
    images: int  # distinct digests pushed in the window with a finding at min_severity or above
    running: int  # of those, run by a cluster (the digest or a related index/manifest)
    not_running: int
    critical: int  # findings summed over those images' newest scans
    high: int
    last_pushed_at: Optional[datetime] = None


class PipelineReport(BaseModel):
    since: datetime
    days: int
    min_severity: str
    pipelines: List[PipelineVulnerabilities]
    truncated: bool = False
