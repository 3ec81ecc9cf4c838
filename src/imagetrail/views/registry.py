"""What the trail shows of the registry side: registry events and the claims pushed images make."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional

from pydantic import BaseModel


class RegistryPush(BaseModel):
    """A push as the registry reported it: who (actor, address, client) pushed what, when."""

    registry: str
    repository: str
    tag: Optional[str] = None
    digest: str
    actor: Optional[str] = None
    source_addr: Optional[str] = None
    user_agent: Optional[str] = None
    pushed_at: datetime


class RegistryEventInfo(RegistryPush):
    """A registry event in a trail."""

    media_type: Optional[str] = None
    received_at: datetime
    format: str  # distribution | acr | event-grid | harbor | sync
    event_id: str


class ClaimedRun(BaseModel):
    """A known pipeline run that a claim names (``matched_by`` "run") or whose commit it names ("commit")."""

    matched_by: str
    system: str
    organization: str
    project: str
    pipeline_id: str
    pipeline: Optional[str] = None
    run_id: str
    run_number: Optional[str] = None
    run_url: Optional[str] = None
    commit: Optional[str] = None


class ClaimInfo(BaseModel):
    """One fact an image states about its origin (labels, provenance), with its evidence word."""

    kind: str  # azure-pipelines-labels | oci-labels | slsa-provenance
    evidence: str  # verified | claimed | disputed
    source: str
    registry: str
    repository: str
    digest: str
    facts: Dict[str, Any]
    recorded_at: datetime
    runs: List[ClaimedRun] = []


class UntracedPush(RegistryPush):
    """A pushed digest no collector report, label or provenance explains."""

    attribution: str  # pending | working | done | failed | not-allowed: how far reading the image got
    detail: Optional[str] = None


class Count(BaseModel):
    name: Optional[str] = None
    pushes: int


class UntracedPage(BaseModel):
    pushes: List[UntracedPush]
    total: int
    page: int
    page_size: int
    by_registry: List[Count]
    by_actor: List[Count]
