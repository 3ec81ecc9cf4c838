"""A push and its trail, as the API answers it and the CLI reads it."""

from __future__ import annotations

from datetime import datetime
from typing import Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field


class OwnerEntry(BaseModel):
    """One owner of an image, in order, with where it came from (cloud/owners.py)."""

    # Frozen: the trace shares one entry among the pushes of the same requester (queries.owners).
    model_config = ConfigDict(frozen=True)

    source: str  # codeowners | commit-author | team-mapping | requester
    name: Optional[str] = None
    email: Optional[str] = None
    login: Optional[str] = None  # GitHub login or @org/team, when the source names one
    detail: Optional[str] = None  # the CODEOWNERS rule, or the team
    evidence: str = "claimed"  # verified | claimed | disputed (imagetrail.facts)

    @property
    def label(self) -> str:
        return self.name or self.login or self.email or "?"


class Stated(BaseModel):
    """One value of a fact, and the credential that stated it."""

    value: str
    evidence: str  # verified | claimed
    credential_kind: str  # azure-devops | github | azure-devops-api | api-key | entra | legacy
    credential_id: str  # key:<id>, the token's subject, the app's id


class RelatedDigest(BaseModel):
    digest: str
    relation: str  # "index": an index listing the traced digest; "platform": a manifest the traced index lists
    os: Optional[str] = None
    architecture: Optional[str] = None
    variant: Optional[str] = None


class Trail(BaseModel):
    """A push and its trail: the run, pipeline, project and organisation that pushed it, the source it was
    built from, who asked for it, who owns it and how each fact is known.

    The fields not excluded are the explorer's ``trail`` JSON; the excluded ones complete the trace
    (``views.trace.TrailPush`` is the trace API's JSON of the same trail).
    """

    system: str = "azure-devops"  # azure-devops | github: the CI system of the run (and its tracker)
    organization: str
    project: str
    pipeline: Optional[str] = None
    pipeline_id: Optional[str] = None
    run_id: str
    run_number: Optional[str] = None
    run_url: Optional[str] = None  # as reported (queries.trace.run_link makes the link shown)
    repository: Optional[str] = None
    branch: Optional[str] = None
    commit: Optional[str] = None
    owner_name: Optional[str] = None
    owner_email: Optional[str] = None
    pushed_reference: str
    pushed_digest: Optional[str]  # None only for a push whose digest could not be read (a reference trace)
    pushed_at: Optional[datetime] = None
    server_url: Optional[str] = None
    evidence: Dict[str, str] = {}  # fact -> verified | claimed | disputed (imagetrail.facts)
    # Ordered, each with its source; the requester alone until owners are resolved (imagetrail owners).
    owners: List[OwnerEntry] = Field(default_factory=list)
    pipeline_key: Optional[int] = Field(default=None, exclude=True)  # pipelines.id, for the server only
    run_key: Optional[int] = Field(default=None, exclude=True)  # runs.id
    repository_name: Optional[str] = Field(default=None, exclude=True)
    # -- the rest of the trace (not in the explorer's JSON) --
    push_key: int = Field(default=0, exclude=True)  # pushes.id
    registry: str = Field(default="", exclude=True)
    image_repository: str = Field(default="", exclude=True)
    tag: Optional[str] = Field(default=None, exclude=True)
    job_id: str = Field(default="", exclude=True)
    job_name: Optional[str] = Field(default=None, exclude=True)
    job_attempt: int = Field(default=1, exclude=True)
    stage: Optional[str] = Field(default=None, exclude=True)
    agent: Optional[str] = Field(default=None, exclude=True)
    run_attempt: int = Field(default=1, exclude=True)
    reason: Optional[str] = Field(default=None, exclude=True)
    repository_uri: Optional[str] = Field(default=None, exclude=True)
    repository_type: Optional[str] = Field(default=None, exclude=True)
    has_requester: bool = Field(default=False, exclude=True)
    report_id: str = Field(default="", exclude=True)
    received_at: Optional[datetime] = Field(default=None, exclude=True)
    identity_kind: str = Field(default="", exclude=True)
    identity_subject: str = Field(default="", exclude=True)
    # a disputed fact: every value stated, and who stated it (filled by the trace, only when disputed)
    competing: Dict[str, List[Stated]] = Field(default_factory=dict, exclude=True)
