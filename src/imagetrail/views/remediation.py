"""The answers of remediation: work items filed (or that a dry run would file), suggestions to close them, and the
owners resolved for the runs that pushed the query's images."""

from __future__ import annotations

from datetime import datetime
from typing import List, Literal, Optional

from pydantic import BaseModel

from imagetrail.views.trail import OwnerEntry


class RemediationOutcome(BaseModel):
    digest: str
    status: Literal["would-create", "created", "exists", "skipped", "failed"]
    tracker: Optional[Literal["azure-devops", "github"]] = None
    target: Optional[str] = None  # where the item is (or would be) filed: the project's or repository's items
    organization: Optional[str] = None
    project: Optional[str] = None  # Azure DevOps project, or GitHub owner/repo
    title: Optional[str] = None
    cve_ids: List[str] = []
    work_item_id: Optional[int] = None  # work item id, or issue number
    work_item_url: Optional[str] = None
    assigned_to: Optional[str] = None  # Azure DevOps: e-mail; GitHub: login
    owner_source: Optional[str] = None
    labels: List[str] = []
    body: Optional[str] = None  # dry run: exactly what the item would say
    reason: Optional[str] = None


class RemediationAnswer(BaseModel):
    dry_run: bool
    work_item_type: str
    outcomes: List[RemediationOutcome]


class CloseSuggestion(BaseModel):
    tracker: str
    organization: str
    project: str
    item_id: int
    item_url: Optional[str] = None
    digest: str  # the image the item was filed for
    cve_ids: List[str]
    newer_digest: str
    newer_reference: str
    newer_pushed_at: Optional[datetime] = None
    newer_scanned_at: datetime
    reason: str


class ResolvedRun(BaseModel):
    organization: str
    project: str
    pipeline: Optional[str] = None
    run_id: str
    digest: str
    owners: List[OwnerEntry]
    problems: List[str] = []  # sources that could not be read, and why


class ResolveAnswer(BaseModel):
    runs: List[ResolvedRun]
