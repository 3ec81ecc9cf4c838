"""Remediation work items for the rows selected in the explorer: a dry run first, then creation.

Both steps call the cloud layer's ``remediate`` (the function behind ``POST /v1/remediations``)
restricted to the selected images, with the explorer's vulnerability filters (minimum severity,
CVE, fix available) deciding which CVEs each work item lists. The confirmation page shows the
dry run's answer, so what it lists is exactly what the POST creates (unless the data changes
in between, in which case the result page shows what happened).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Set

from pydantic import ValidationError
from sqlalchemy.orm import sessionmaker

from imagetrail.auth import Principal
from imagetrail.queries.explorer import run_query
from imagetrail.queries.trail import find_trails
from imagetrail.services.remediation import (
    DEFAULT_MIN_SEVERITY,
    RemediationConfigError,
    remediate,
)
from imagetrail.settings import Settings
from imagetrail.views.filters import ExplorerFilters
from imagetrail.views.remediation import RemediationAnswer

# The explorer filters that decide the CVE set of a work item; carried from the explorer form.
CVE_FILTERS = ("min_severity", "cve", "fix_available")


@dataclass
class PlannedItem:
    digest: str
    organization: str
    project: str
    work_item_type: str
    title: str
    assigned_to: Optional[str]
    cves: List[str]
    build_label: str
    build_url: Optional[str]
    tracker: str = "azure-devops"
    target: Optional[str] = None  # the project's work items or the repository's issues
    owner_source: Optional[str] = None
    body: str = ""  # exactly what the item will say (HTML for Azure DevOps, Markdown for GitHub)


@dataclass
class Skipped:
    digest: str
    reason: str
    url: Optional[str] = None


@dataclass
class Plan:
    items: List[PlannedItem] = field(default_factory=list)
    skipped: List[Skipped] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)


@dataclass
class CreatedItem:
    digest: str
    organization: str
    project: str
    id: Optional[int]
    url: Optional[str]
    status: str
    title: str = ""


@dataclass
class Outcome:
    items: List[CreatedItem] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)


def cve_filter_values(params: Mapping[str, str]) -> Dict[str, str]:
    """The CVE-set filters from a form, kept as strings for hidden inputs."""
    return {
        name: (params.get(name) or "").strip() for name in CVE_FILTERS if (params.get(name) or "").strip()
    }


def _filters(digests: Sequence[str], values: Mapping[str, str]) -> ExplorerFilters:
    return ExplorerFilters(
        digests=list(digests),
        min_severity=values.get("min_severity") or None,
        cve=values.get("cve") or None,
        fix_available=values.get("fix_available") in ("true", "on", "1"),
    )


def _validation_errors(exc: ValidationError) -> List[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]


def plan(
    sessions: sessionmaker,
    settings: Settings,
    principal: Principal,
    digests: Sequence[str],
    values: Mapping[str, str],
) -> Plan:
    try:
        filters = _filters(digests, values)
    except ValidationError as exc:
        return Plan(errors=_validation_errors(exc))
    try:
        answer: RemediationAnswer = remediate(sessions, settings, principal, filters, dry_run=True)
    except RemediationConfigError as exc:
        return Plan(errors=[str(exc)])
    with sessions() as session:
        trails = find_trails(session, [o.digest for o in answer.outcomes], principal=principal)
    result = Plan()
    selected = set(digests)
    for outcome in answer.outcomes:
        if outcome.status == "would-create":
            trail = trails.get(outcome.digest)
            label = (
                f"{trail.pipeline or trail.pipeline_id} #{trail.run_number or trail.run_id}" if trail else "?"
            )
            result.items.append(
                PlannedItem(
                    digest=outcome.digest,
                    organization=outcome.organization or "",
                    project=outcome.project or "",
                    work_item_type="issue" if outcome.tracker == "github" else answer.work_item_type,
                    title=outcome.title or "",
                    assigned_to=outcome.assigned_to,
                    cves=outcome.cve_ids,
                    build_label=label,
                    build_url=trail.run_url if trail else None,
                    tracker=outcome.tracker or "azure-devops",
                    target=outcome.target,
                    owner_source=outcome.owner_source,
                    body=outcome.body or "",
                )
            )
        else:
            result.skipped.append(
                Skipped(outcome.digest, outcome.reason or outcome.status, outcome.work_item_url)
            )
    result.skipped += _not_matched(
        sessions, principal, selected - {o.digest for o in answer.outcomes}, values
    )
    return result


def _not_matched(
    sessions: sessionmaker, principal: Principal, digests: Set[str], values: Mapping[str, str]
) -> List[Skipped]:
    """Why selected images got no outcome: ``remediate`` only sees rows that pass the CVE filters."""
    if not digests:
        return []
    with sessions() as session:
        rows = run_query(
            session, ExplorerFilters(digests=sorted(digests)), principal, page=1, page_size=len(digests)
        )
    running = {row.digest for row in rows.rows}
    wanted = f"no finding at {values.get('min_severity') or DEFAULT_MIN_SEVERITY} or above"
    if values.get("cve"):
        wanted += f" for {values['cve'].strip().upper()}"
    if values.get("fix_available") in ("true", "on", "1"):
        wanted += " with a fix available"
    return [
        Skipped(digest, wanted if digest in running else "no running container you may see runs this image")
        for digest in sorted(digests)
    ]


def create(
    sessions: sessionmaker,
    settings: Settings,
    principal: Principal,
    digests: Sequence[str],
    values: Mapping[str, str],
) -> Outcome:
    try:
        filters = _filters(digests, values)
    except ValidationError as exc:
        return Outcome(errors=_validation_errors(exc))
    try:
        answer = remediate(sessions, settings, principal, filters, dry_run=False)
    except RemediationConfigError as exc:
        return Outcome(errors=[str(exc)])
    outcome = Outcome()
    for item in answer.outcomes:
        outcome.items.append(
            CreatedItem(
                item.digest,
                item.organization or "",
                item.project or "",
                item.work_item_id,
                item.work_item_url,
                item.status + (f": {item.reason}" if item.reason else ""),
                item.title or "",
            )
        )
        if item.status == "failed":
            outcome.errors.append(f"{item.digest}: {item.reason}")
    missing = set(digests) - {item.digest for item in answer.outcomes}
    for skipped in _not_matched(sessions, principal, missing, values):
        outcome.items.append(CreatedItem(skipped.digest, "", "", None, None, f"skipped: {skipped.reason}"))
    return outcome
