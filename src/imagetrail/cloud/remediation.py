"""Remediation: one Azure DevOps work item per vulnerable image, in the project of the run that built it.

Uses the ``azure-devops`` package (Work Items - Create: ``POST {org}/{project}/_apis/wit/workitems/${type}``
with a JSON Patch body). The organisation URL, where the PAT goes, comes from configuration only (see
``trusted_organization_url``). A work item is never created twice for the same image and CVE set: created
items are recorded in ``remediation_items`` keyed by digest + SHA-256 of the sorted CVE ids. When the
CVE set of an image changes, a new work item is created and its description names the earlier one.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import FrozenSet, List, Literal, Optional
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.cloud import severity as sev
from imagetrail.cloud.explorer import ExplorerFilters, ExplorerRow, Trail, run_query
from imagetrail.facts import DISPUTED, summary
from imagetrail.sanitize import safe_url
from imagetrail.server.auth import Principal
from imagetrail.server.models.cloud import Finding, RemediationItem, VulnerabilitySummary
from imagetrail.server.settings import Settings

# "Bug" exists in the Agile (the default), Scrum and CMMI processes; Basic projects have "Issue" instead.
DEFAULT_WORK_ITEM_TYPE = "Bug"
DEFAULT_MIN_SEVERITY = "high"
PAT_VARIABLE = "IMAGETRAIL_AZURE_DEVOPS_PAT"
SERVICES_URL_VARIABLE = "IMAGETRAIL_AZURE_DEVOPS_URL"
SERVER_URLS_VARIABLE = "IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS"
UNTRUSTED_REASON = f"not remediable: organisation URL not trusted (set {SERVER_URLS_VARIABLE})"
PUBLIC_SERVICES_HOST = "dev.azure.com"
# Azure DevOps Services organisation names: letters, digits and hyphens, starting and ending with a
# letter or digit, at most 50 characters. Checked because the name becomes a path segment of the URL.
ORGANIZATION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")
MAX_ROWS = 5000
MAX_LISTED_CVES = 50


class RemediationConfigError(RuntimeError):
    """Remediation cannot run: the message says which setting is missing."""


class RemediationOutcome(BaseModel):
    digest: str
    status: Literal["would-create", "created", "exists", "skipped", "failed"]
    organization: Optional[str] = None
    project: Optional[str] = None
    title: Optional[str] = None
    cve_ids: List[str] = []
    work_item_id: Optional[int] = None
    work_item_url: Optional[str] = None
    assigned_to: Optional[str] = None
    reason: Optional[str] = None


class RemediationAnswer(BaseModel):
    dry_run: bool
    work_item_type: str
    outcomes: List[RemediationOutcome]


@dataclass
class _Image:
    digest: str
    rows: List[ExplorerRow] = field(default_factory=list)


def cve_set_hash(cve_ids: List[str]) -> str:
    return hashlib.sha256("\n".join(sorted(set(cve_ids))).encode()).hexdigest()


def _findings(session: Session, digest: str, min_rank: int, fixable_only: bool) -> List[Finding]:
    summary = session.get(VulnerabilitySummary, digest)
    if summary is None:
        return []
    query = select(Finding).where(Finding.scan_id == summary.scan_id, Finding.severity >= min_rank)
    if fixable_only:
        query = query.where(Finding.fixed_version.is_not(None))
    return list(session.execute(query.order_by(Finding.severity.desc(), Finding.vulnerability_id)).scalars())


# What the evidence words mean, in one phrase for readers of a work item.
FACTS_HELP = "verified: bound to the CI job's own identity; claimed: reported without that binding; " \
             "disputed: reports of the run disagree"


def _owner(trail: Trail) -> Optional[str]:
    """Whom to assign: never a requester that reports of the run disagree on."""
    return None if trail.evidence.get("requester") == DISPUTED else trail.owner_email


def _description(image: _Image, findings: List[Finding], previous: Optional[RemediationItem]) -> str:
    trail = image.rows[0].trail
    esc = html.escape
    parts = [
        f"<p>ImageTrail found vulnerabilities in image <code>{esc(image.digest)}</code>, built by "
        f"{_run_link(trail)}.</p>"
    ]
    parts.append(
        f"<p>Repository: {esc(trail.repository or '?')}, branch {esc(trail.branch or '?')}, "
        f"commit <code>{esc(trail.commit or '?')}</code>. Pushed as <code>{esc(trail.pushed_reference)}"
        "</code>.</p>"
    )
    parts.append(f"<p>How ImageTrail knows this ({esc(FACTS_HELP)}): {esc(summary(trail.evidence))}.</p>")
    if trail.evidence.get("requester") == DISPUTED:
        parts.append("<p>Reports of this run disagree on who requested it: the item is not assigned; "
                     "check the trail before assigning it.</p>")
    parts.append(
        "<table><tr><th>CVE</th><th>Severity</th><th>Package</th><th>Installed</th><th>Fixed in</th></tr>"
    )
    seen = set()
    for finding in findings[:MAX_LISTED_CVES]:
        key = (finding.vulnerability_id, finding.package)
        if key in seen:
            continue
        seen.add(key)
        parts.append(
            f"<tr><td>{esc(finding.vulnerability_id)}</td><td>{sev.NAMES[finding.severity]}</td>"
            f"<td>{esc(finding.package)}</td><td>{esc(finding.installed_version or '')}</td>"
            f"<td>{esc(finding.fixed_version or 'no fix yet')}</td></tr>"
        )
    parts.append("</table>")
    if len(findings) > MAX_LISTED_CVES:
        parts.append(f"<p>... and {len(findings) - MAX_LISTED_CVES} more findings.</p>")
    running = [row for row in image.rows if row.running]
    if not running:
        parts.append("<p>No cluster ImageTrail knows runs this image yet: fix it before it is deployed.</p>")
    parts.append("<p>Running in:</p><ul>" if running else "<ul>")
    for row in running:
        exposure = "; ".join(e.reason for e in row.exposure) or "not exposed to the internet"
        parts.append(
            f"<li>{esc(row.cluster)} / {esc(row.namespace)} / {esc(row.workload_kind)} "
            f"{esc(row.workload_name)} (container {esc(row.container)}): {esc(exposure)}</li>"
        )
    parts.append("</ul>")
    if previous is not None:
        parts.append(f"<p>The CVE set changed since work item #{previous.work_item_id}.</p>")
    return "".join(parts)


def _run_link(trail) -> str:
    label = html.escape(f"{trail.pipeline or 'pipeline'} run {trail.run_number or trail.run_id}")
    url = safe_url(trail.run_url)  # a report's run URL is never trusted to be a harmless link
    if url:
        return f'<a href="{html.escape(url)}">{label}</a>'
    return label


def _normalized_url(url: str) -> str:
    """``url`` with its scheme and host in lower case and no trailing slash; the rest compared as is."""
    parts = urlsplit(url.strip())
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, parts.fragment)
    )


def _configured_url(value: str, variable: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise RemediationConfigError(
            f"{variable}: {value.strip()!r} is not an http(s) URL such as https://tfs.example.com/tfs/"
            "DefaultCollection"
        )
    return _normalized_url(value)


def server_collection_urls(environ=None) -> FrozenSet[str]:
    """The trusted Azure DevOps Server collection URLs (``IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS``), normalised."""
    raw = (os.environ if environ is None else environ).get(SERVER_URLS_VARIABLE, "")
    return frozenset(_configured_url(v, SERVER_URLS_VARIABLE) for v in raw.split(",") if v.strip())


def trusted_organization_url(
    services_url: str, trusted_servers: FrozenSet[str], organization: str, server_url: Optional[str]
) -> Optional[str]:
    """Where the PAT may be sent for a run of ``organization`` that reported ``server_url``; None: nowhere.

    The answer is always built from configuration, never taken from the report: reports come from
    pipelines, and the server must not send its PAT wherever a report says. A run of Azure DevOps
    Services (no serverUrl, ``{services_url}/{org}``, ``https://dev.azure.com/{org}`` or the older
    ``https://{org}.visualstudio.com``) goes to ``{services_url}/{org}``; a run of Azure DevOps Server
    only to a collection URL listed in ``IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS``.
    """
    services = _normalized_url(services_url)
    if server_url and _normalized_url(server_url) in trusted_servers:
        return _normalized_url(server_url)
    if not ORGANIZATION_NAME.fullmatch(organization or ""):
        return None
    services_org = f"{services}/{organization}".lower()
    if not server_url or _normalized_url(server_url).lower() in (
        services_org,
        f"https://{PUBLIC_SERVICES_HOST}/{organization}".lower(),
        f"https://{organization}.visualstudio.com".lower(),
    ):
        return f"{services}/{organization}"
    return None


def _create(org_url: str, pat: str, project: str, work_item_type: str, document: List[dict]):
    from azure.devops.connection import Connection
    from azure.devops.v7_1.work_item_tracking.models import JsonPatchOperation
    from msrest.authentication import BasicAuthentication

    connection = Connection(base_url=org_url, creds=BasicAuthentication("", pat))
    client = connection.clients_v7_1.get_work_item_tracking_client()
    operations = [JsonPatchOperation(op=o["op"], path=o["path"], value=o["value"]) for o in document]
    return client.create_work_item(document=operations, project=project, type=work_item_type)


def _document(
    title: str, description: str, tags: str, assigned_to: Optional[str], build_id: str
) -> List[dict]:
    document = [
        {"op": "add", "path": "/fields/System.Title", "value": title},
        {"op": "add", "path": "/fields/System.Description", "value": description},
        {"op": "add", "path": "/fields/System.Tags", "value": tags},
    ]
    if assigned_to:
        document.append({"op": "add", "path": "/fields/System.AssignedTo", "value": assigned_to})
    document.append(
        {
            "op": "add",
            "path": "/relations/-",
            "value": {
                "rel": "ArtifactLink",
                "url": f"vstfs:///Build/Build/{build_id}",
                "attributes": {"name": "Build"},
            },
        }
    )
    return document


def _images(session: Session, filters: ExplorerFilters, principal: Principal) -> "OrderedDict[str, _Image]":
    images: "OrderedDict[str, _Image]" = OrderedDict()
    page = 1
    while True:
        result = run_query(session, filters, principal, page=page, page_size=500, sort="-severity")
        for row in result.rows:
            if row.digest:
                images.setdefault(row.digest, _Image(row.digest)).rows.append(row)
        if page * 500 >= min(result.total, MAX_ROWS):
            return images
        page += 1


def remediate(
    sessions: sessionmaker,
    settings: Settings,
    principal: Principal,
    filters: ExplorerFilters,
    dry_run: bool = False,
    work_item_type: str = DEFAULT_WORK_ITEM_TYPE,
    max_items: int = 100,
) -> RemediationAnswer:
    """Plan (dry run) or create work items for the images in the query's rows."""
    if filters.min_severity is None:
        filters = filters.model_copy(update={"min_severity": DEFAULT_MIN_SEVERITY})
    min_rank = sev.parse_filter(filters.min_severity)
    pat = os.environ.get(PAT_VARIABLE, "")
    services_url = _configured_url(settings.azure_devops_url, SERVICES_URL_VARIABLE)
    trusted_servers = server_collection_urls()
    if not dry_run and not pat:
        raise RemediationConfigError(
            f"set {PAT_VARIABLE} on the server to a personal access token with the "
            "Work Items (Read & write) scope, or use --dry-run"
        )
    outcomes: List[RemediationOutcome] = []
    created = 0
    with sessions() as session:
        images = _images(session, filters, principal)
    for digest, image in images.items():
        trail = image.rows[0].trail
        if trail is None:
            outcomes.append(
                RemediationOutcome(
                    digest=digest,
                    status="skipped",
                    reason="no pipeline run is known for this image (a coverage gap)",
                )
            )
            continue
        base = dict(
            digest=digest,
            organization=trail.organization,
            project=trail.project,
            assigned_to=_owner(trail),
        )
        with sessions() as session:
            findings = _findings(session, digest, min_rank, filters.fix_available)
            cve_ids = sorted({f.vulnerability_id for f in findings})
            if filters.cve:
                cve_ids = [c for c in cve_ids if c == filters.cve]
                findings = [f for f in findings if f.vulnerability_id == filters.cve]
            if not cve_ids:
                outcomes.append(
                    RemediationOutcome(
                        **base, status="skipped", reason=f"no finding at {filters.min_severity} or above"
                    )
                )
                continue
            digest_hash = cve_set_hash(cve_ids)
            existing = session.execute(
                select(RemediationItem).where(
                    RemediationItem.digest == digest, RemediationItem.cve_set_hash == digest_hash
                )
            ).scalar_one_or_none()
            previous = session.execute(
                select(RemediationItem)
                .where(RemediationItem.digest == digest)
                .order_by(RemediationItem.created_at.desc())
                .limit(1)
            ).scalar_one_or_none()
            description = _description(image, findings, previous)
        top = sev.NAMES[max(f.severity for f in findings)]
        name = image.rows[0].repository
        title = f"[ImageTrail] {len(cve_ids)} {top}+ vulnerabilities in {name}@{digest[:19]}"[:255]
        base.update(title=title, cve_ids=cve_ids)
        if existing is not None:
            outcomes.append(
                RemediationOutcome(
                    **base,
                    status="exists",
                    work_item_id=existing.work_item_id,
                    work_item_url=existing.work_item_url,
                    reason="a work item for this image and CVE set exists",
                )
            )
            continue
        org_url = trusted_organization_url(
            services_url, trusted_servers, trail.organization, trail.server_url
        )
        if org_url is None:
            # Checked in a dry run too, so the plan never lists an item that cannot be created.
            reported = (trail.server_url or "")[:200]
            outcomes.append(
                RemediationOutcome(
                    **base, status="skipped", reason=f"{UNTRUSTED_REASON}; the run reported {reported!r}"
                )
            )
            continue
        if created >= max_items:
            outcomes.append(
                RemediationOutcome(**base, status="skipped", reason=f"max_items={max_items} reached")
            )
            continue
        tags = f"imagetrail; {top}"
        document = _document(title, description, tags, _owner(trail), trail.run_id)
        if dry_run:
            outcomes.append(RemediationOutcome(**base, status="would-create"))
            created += 1
            continue
        try:
            item = _create(org_url, pat, trail.project, work_item_type, document)
        except Exception as exc:  # the azure-devops package raises its own and requests' errors
            message = str(exc).replace(pat, "***")[:300]
            outcomes.append(
                RemediationOutcome(**base, status="failed", reason=f"{type(exc).__name__}: {message}")
            )
            continue
        web_url = f"{org_url}/{trail.project}/_workitems/edit/{item.id}"
        with sessions() as session, session.begin():
            # One commit per item: a later failure must not forget items already created.
            session.add(
                RemediationItem(
                    digest=digest,
                    cve_set_hash=digest_hash,
                    cve_ids=cve_ids,
                    organization=trail.organization,
                    project=trail.project,
                    work_item_id=item.id,
                    work_item_url=web_url,
                    work_item_type=work_item_type,
                    created_at=datetime.now(timezone.utc),
                )
            )
        created += 1
        outcomes.append(
            RemediationOutcome(**base, status="created", work_item_id=item.id, work_item_url=web_url)
        )
    return RemediationAnswer(dry_run=dry_run, work_item_type=work_item_type, outcomes=outcomes)


__all__ = [
    "remediate",
    "RemediationAnswer",
    "RemediationOutcome",
    "RemediationConfigError",
    "DEFAULT_WORK_ITEM_TYPE",
    "cve_set_hash",
    "server_collection_urls",
    "trusted_organization_url",
]
