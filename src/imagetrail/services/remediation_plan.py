"""Remediation planning: which images the query selects, their CVE sets, and what each item says.

Read-only: the query's rows grouped by digest (one item per image, across every workload running it,
or none for an image no cluster runs), the CVE set of the image's newest scan, and the item's title
and body for Azure DevOps (HTML) and GitHub (Markdown). Report-sourced text is escaped for each.
"""

from __future__ import annotations

import hashlib
import html
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from sqlalchemy.orm import Session

from imagetrail import severity as sev
from imagetrail.auth import Principal
from imagetrail.facts import DISPUTED, summary
from imagetrail.queries import remediation as reads
from imagetrail.queries.explorer import run_query
from imagetrail.sanitize import safe_url
from imagetrail.views.explorer import ExplorerRow
from imagetrail.views.filters import ExplorerFilters
from imagetrail.views.trail import Trail

DEFAULT_MIN_SEVERITY = "high"
MAX_ROWS = 5000
MAX_LISTED_CVES = 50
MAX_OWNERS = 5  # listed in an item's body
PAGE = 500
# What the evidence words mean, in one phrase for readers of an item.
FACTS_HELP = (
    "verified: bound to the CI job's own identity; claimed: reported without that binding; "
    "disputed: reports of the run disagree"
)


@dataclass
class PlannedImage:
    digest: str
    rows: List[ExplorerRow] = field(default_factory=list)

    @property
    def trail(self) -> Optional[Trail]:
        return self.rows[0].trail

    @property
    def running(self) -> List[ExplorerRow]:
        return [row for row in self.rows if row.running]


def cve_set_hash(cve_ids: List[str]) -> str:
    return hashlib.sha256("\n".join(sorted(set(cve_ids))).encode()).hexdigest()


def marker(digest: str, cve_hash: str) -> str:
    """The stable text an item's body carries, so the tracker itself can tell it was filed already."""
    return f"<!-- imagetrail:remediation digest={digest} cves={cve_hash} -->"


def images(
    session: Session, filters: ExplorerFilters, principal: Principal
) -> "OrderedDict[str, PlannedImage]":
    planned: "OrderedDict[str, PlannedImage]" = OrderedDict()
    page = 1
    while True:
        result = run_query(session, filters, principal, page=page, page_size=PAGE, sort="-severity")
        for row in result.rows:
            if row.digest:
                planned.setdefault(row.digest, PlannedImage(row.digest)).rows.append(row)
        if page * PAGE >= min(result.total, MAX_ROWS):
            return planned
        page += 1


def findings(session: Session, digest: str, filters: ExplorerFilters) -> List[Any]:
    """The findings at ``filters.min_severity`` or above in the image's newest scan (``cve`` narrows)."""
    return reads.findings(session, digest, filters)


def title(image: PlannedImage, found: List[Any]) -> str:
    top = sev.NAMES[max(f.severity for f in found)]
    count = len({f.vulnerability_id for f in found})
    return f"[ImageTrail] {count} {top}+ vulnerabilities in {image.rows[0].repository}@{image.digest[:19]}"[
        :255
    ]


def top_severity(found: List[Any]) -> str:
    return sev.NAMES[max(f.severity for f in found)]


def _unique(found: List[Any]) -> List[Any]:
    seen, unique = set(), []
    for finding in found[:MAX_LISTED_CVES]:
        key = (finding.vulnerability_id, finding.package)
        if key not in seen:
            seen.add(key)
            unique.append(finding)
    return unique


def html_description(
    image: PlannedImage,
    found: List[Any],
    previous: Optional[Any],
    owners: List[Tuple[str, str]],
) -> str:
    """The Azure DevOps work item's ``System.Description``."""
    trail = image.trail
    esc = html.escape
    parts = [
        f"<p>ImageTrail found vulnerabilities in image <code>{esc(image.digest)}</code>, built by "
        f"{_run_link(trail)}.</p>",
        f"<p>Repository: {esc(trail.repository or '?')}, branch {esc(trail.branch or '?')}, "
        f"commit <code>{esc(trail.commit or '?')}</code>. Pushed as <code>{esc(trail.pushed_reference)}"
        "</code>.</p>",
        f"<p>How ImageTrail knows this ({esc(FACTS_HELP)}): {esc(summary(trail.evidence))}.</p>",
        "<p>Owners, in order: "
        + ", ".join(f"{esc(who)} ({esc(source)})" for who, source in owners[:MAX_OWNERS])
        + ".</p>"
        if owners
        else "<p>No owner is known.</p>",
    ]
    if trail.evidence.get("requester") == DISPUTED:
        parts.append(
            "<p>Reports of this run disagree on who requested it: the item is not assigned; "
            "check the trail before assigning it.</p>"
        )
    parts.append(
        "<table><tr><th>CVE</th><th>Severity</th><th>Package</th><th>Installed</th><th>Fixed in</th></tr>"
    )
    for finding in _unique(found):
        parts.append(
            f"<tr><td>{esc(finding.vulnerability_id)}</td><td>{sev.NAMES[finding.severity]}</td>"
            f"<td>{esc(finding.package)}</td><td>{esc(finding.installed_version or '')}</td>"
            f"<td>{esc(finding.fixed_version or 'no fix yet')}</td></tr>"
        )
    parts.append("</table>")
    if len(found) > MAX_LISTED_CVES:
        parts.append(f"<p>... and {len(found) - MAX_LISTED_CVES} more findings.</p>")
    running = image.running
    if not running:
        parts.append("<p>No cluster ImageTrail knows runs this image yet: fix it before it is deployed.</p>")
    else:
        parts.append("<p>Running in:</p><ul>")
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


def _code(value: Optional[str]) -> str:
    """Report-sourced text as a Markdown code span: no links, no @mentions, no markup."""
    text = (value or "?").replace("`", "'").replace("\n", " ")
    return f"`{text}`"


def markdown_body(
    image: PlannedImage,
    found: List[Any],
    previous: Optional[Any],
    owners: List[Tuple[str, str]],
    item_marker: str,
) -> str:
    """The GitHub issue's body (GitHub Flavored Markdown); ``item_marker`` lets a later run find it."""
    trail = image.trail
    url = safe_url(trail.run_url)
    run = f"{trail.pipeline or 'workflow'} run {trail.run_number or trail.run_id}"
    lines = [
        f"ImageTrail found vulnerabilities in image {_code(image.digest)}, built by "
        + (f"[{_code(run)}]({url})" if url else _code(run))
        + ".",
        "",
        f"Repository {_code(trail.repository)}, branch {_code(trail.branch)}, commit {_code(trail.commit)}; "
        f"pushed as {_code(trail.pushed_reference)}.",
        "",
        f"How ImageTrail knows this ({FACTS_HELP}): {summary(trail.evidence)}.",
        "",
        "Owners, in order: "
        + ", ".join(f"{_code(who)} ({source})" for who, source in owners[:MAX_OWNERS])
        + "."
        if owners
        else "No owner is known.",
        "",
        "| CVE | Severity | Package | Installed | Fixed in |",
        "|---|---|---|---|---|",
    ]
    for finding in _unique(found):
        lines.append(
            f"| {_code(finding.vulnerability_id)} | {sev.NAMES[finding.severity]} | {_code(finding.package)} | "
            f"{_code(finding.installed_version or '')} | {_code(finding.fixed_version or 'no fix yet')} |"
        )
    if len(found) > MAX_LISTED_CVES:
        lines.append(f"\n... and {len(found) - MAX_LISTED_CVES} more findings.")
    running = image.running
    lines.append("")
    if not running:
        lines.append("No cluster ImageTrail knows runs this image yet: fix it before it is deployed.")
    for row in running:
        exposure = "; ".join(e.reason for e in row.exposure) or "not exposed to the internet"
        workload = f"{row.cluster}/{row.namespace}/{row.workload_kind} {row.workload_name}"
        lines.append(f"- running in {_code(workload)} (container {_code(row.container)}): {_code(exposure)}")
    if previous is not None:
        lines += ["", f"The CVE set changed since #{previous.work_item_id}."]
    lines += ["", item_marker]
    return "\n".join(lines)


def _run_link(trail: Trail) -> str:
    label = html.escape(f"{trail.pipeline or 'pipeline'} run {trail.run_number or trail.run_id}")
    url = safe_url(trail.run_url)  # a report's run URL is never trusted to be a harmless link
    if url:
        return f'<a href="{html.escape(url)}">{label}</a>'
    return label
