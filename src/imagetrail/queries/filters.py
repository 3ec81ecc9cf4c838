"""The explorer's filter model and paging bounds: one definition that the API parameters, the CLI options and
the web form are built from."""

from __future__ import annotations

from datetime import datetime
from typing import List, Literal, Optional

from pydantic import BaseModel, ConfigDict, field_validator

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



def check_paging(page: int, page_size: int) -> None:
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page must be between 1 and {MAX_PAGE}, not {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
