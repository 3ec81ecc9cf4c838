"""The trace answer (``GET /v1/images/{digest}/trail``, ``/v1/trail``) and image listing rows."""

from __future__ import annotations

from datetime import datetime
from typing import Dict, List, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field

from imagetrail.views.registry import ClaimInfo, RegistryEventInfo
from imagetrail.views.trail import OwnerEntry, RelatedDigest, Stated


class Named(BaseModel):
    id: Optional[str] = None
    name: Optional[str] = None


class RunInfo(BaseModel):
    id: str
    number: Optional[str] = None
    attempt: int = 1
    reason: Optional[str] = None
    url: Optional[str] = None  # link to the run in Azure DevOps / GitHub


class JobInfo(BaseModel):
    id: str
    name: Optional[str] = None
    attempt: int = 1
    stage: Optional[str] = None
    agent: Optional[str] = None


class SourceInfo(BaseModel):
    repository: Optional[str] = None
    uri: Optional[str] = None
    type: Optional[str] = None
    branch: Optional[str] = None
    commit: Optional[str] = None
    commit_url: Optional[str] = None


class PersonInfo(BaseModel):
    name: Optional[str] = None
    email: Optional[str] = None


class Evidence(BaseModel):
    report_id: str
    received_at: datetime
    identity_kind: str
    identity_subject: str


class FactEvidence(BaseModel):
    # Frozen: a trace page shares one instance per level among the facts no one disputes (queries.trace).
    model_config = ConfigDict(frozen=True)

    evidence: str  # verified | claimed | disputed
    competing: List[Stated] = []  # a disputed fact: every value stated, and who stated it


class TrailPush(BaseModel):
    reference: str
    registry: str
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None
    # how this push relates to the traced digest: "digest" (same), "index" (an index that lists
    # it), "platform" (a platform manifest the traced index lists), "reference" (by reference)
    matched_by: str
    pushed_at: Optional[datetime] = None
    system: str
    organization: str
    project: str
    pipeline: Named
    run: RunInfo
    job: JobInfo
    source: SourceInfo
    requester: Optional[PersonInfo] = None
    # Who should fix it, in order, each with its source (cloud/owners.py); the requester until resolved.
    owners: List[OwnerEntry] = []
    evidence: Evidence
    # organization, project, pipeline, run, repository, branch, commit, requester -> how it is known
    facts: Dict[str, FactEvidence] = {}
    # Who reported this push: the collector, and the registry too when it notified the same
    # reference and digest (one push, two sources; imagetrail.queries.registry_trail joins them).
    sources: List[str] = ["collector"]
    registry_events: List[RegistryEventInfo] = []


class TraceAnswer(BaseModel):
    """The answer of a trace: one page of the pushes of a digest (and its relatives) or a reference."""

    query: str
    digest: Optional[str] = None
    related: List[RelatedDigest] = []
    pushes: List[TrailPush] = []  # one page, newest first
    has_more: bool = False  # older pushes exist: ask again with before=next
    next: Optional[str] = None  # the cursor of the next (older) page
    # Nothing visible was found, but pushes of organisations the reader may not read match: the answer
    # says so (never which organisations, nor anything of those pushes).
    hidden_by_permissions: bool = False
    # Registry side: pushes only a registry reported, and what the images claim (labels, provenance).
    registry_pushes: List[RegistryEventInfo] = []
    claims: List[ClaimInfo] = []
    # What the push statement already learnt of the registry side (None: not asked; queries.registry_trail).
    registry_seen: Optional[Tuple[bool, bool]] = Field(default=None, exclude=True)


class ImageRow(BaseModel):
    digest: Optional[str] = None
    reference: str
    pushed_at: Optional[datetime] = None
    organization: str
    project: str
    pipeline: Named
    run: RunInfo
    commit: Optional[str] = None
    requester: Optional[str] = None
    evidence: Dict[str, str] = {}  # fact -> verified | claimed | disputed
