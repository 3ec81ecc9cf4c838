"""Remediation: one item per vulnerable image, in the tracker of the CI system that built it.

Azure DevOps runs get a work item in the run's project; GitHub workflow runs get an issue in the run's
repository. Never the other: the tracker comes from the run's system (``organizations.system``), not
from a name. This module sequences the steps; each concern has its own module:

* planning query (read-only): ``cloud/remediation_plan.py``;
* trust policy (which tracker, where credentials may go): ``cloud/remediation_trust.py``;
* tracker clients: ``cloud/trackers.py``;
* writes (items filed): ``ingest/remediation_items.py``; their reads: ``queries/remediation.py``.

An item is never filed twice for the same image and CVE set: ``remediation_items`` is keyed by digest +
SHA-256 of the sorted CVE ids, and a GitHub issue's body carries a marker the repository's
``imagetrail``-labelled issues are searched for before creating one (an issue filed by another
ImageTrail instance, or before the record was written, is found there). When the CVE set of an image
changes, a new item is created whose body names the earlier one.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from sqlalchemy.orm import sessionmaker

from imagetrail.auth import Principal
from imagetrail.facts import DISPUTED
from imagetrail.ingest import remediation_items
from imagetrail.queries import remediation as remediation_reads
from imagetrail.queries.owners import OwnerPolicy
from imagetrail.remote.trackers import ISSUE_LABEL, AzureDevOpsBoards, GitHubIssues, TrackerError
from imagetrail.services import remediation_plan as plan
from imagetrail.services.remediation_plan import DEFAULT_MIN_SEVERITY, cve_set_hash
from imagetrail.services.remediation_trust import (
    GITHUB_TOKEN_VARIABLE,
    PAT_VARIABLE,
    SYSTEM_GITHUB,
    UNTRUSTED_REASON,
    Destination,
    Policy,
    RemediationConfigError,
    route,
    server_collection_urls,
    trusted_organization_url,
)
from imagetrail.settings import Settings
from imagetrail.views.filters import ExplorerFilters
from imagetrail.views.remediation import RemediationAnswer, RemediationOutcome
from imagetrail.views.trail import Trail

# "Bug" exists in the Agile (the default), Scrum and CMMI processes; Basic projects have "Issue" instead.
DEFAULT_WORK_ITEM_TYPE = "Bug"
GITHUB_ITEM_TYPE = "issue"


def _assignee(
    trail: Trail, tracker: str, owners: OwnerPolicy
) -> Tuple[Optional[str], Optional[str], List[Tuple[str, str]]]:
    """(whom the tracker assigns, that owner's source, every (owner, source) for the body).

    The assignee is the first owner the tracker knows as a user: on GitHub a login (a team cannot be
    assigned), on Azure DevOps an e-mail. Never a bot, and never anyone from a disputed fact.
    """
    listed = [o for o in owners.keep(trail.owners) if o.evidence != DISPUTED]
    if trail.evidence.get("requester") == DISPUTED:
        listed = [o for o in listed if o.source != "requester"]
    everyone = [(o.label, o.source) for o in listed]
    for owner in listed:
        if tracker == SYSTEM_GITHUB and owner.login and "/" not in owner.login:
            return owner.login.lstrip("@"), owner.source, everyone
        if tracker != SYSTEM_GITHUB and owner.email:
            return owner.email, owner.source, everyone
    return None, None, everyone


class _Clients:
    """One tracker client per destination base URL, created when first needed (never in a dry run)."""

    def __init__(self, pat: str, github_token: str):
        self._pat, self._token, self._made = pat, github_token, {}

    def get(self, destination: Destination):
        key = (destination.tracker, destination.base_url)
        if key not in self._made:
            if destination.tracker == SYSTEM_GITHUB:
                if not self._token:
                    raise TrackerError(
                        f"set {GITHUB_TOKEN_VARIABLE} on the server to a token with issues: write"
                    )
                self._made[key] = GitHubIssues(destination.base_url, self._token)
            else:
                if not self._pat:
                    raise TrackerError(
                        f"set {PAT_VARIABLE} on the server to a PAT with Work Items (Read & write)"
                    )
                self._made[key] = AzureDevOpsBoards(destination.base_url, self._pat)
        return self._made[key]


def remediate(
    sessions: sessionmaker,
    settings: Settings,
    principal: Principal,
    filters: ExplorerFilters,
    dry_run: bool = False,
    work_item_type: str = DEFAULT_WORK_ITEM_TYPE,
    max_items: int = 100,
) -> RemediationAnswer:
    """Plan (dry run) or create items for the images in the query's rows."""
    if filters.min_severity is None:
        filters = filters.model_copy(update={"min_severity": DEFAULT_MIN_SEVERITY})
    pat = settings.azure_devops_pat or ""
    policy = Policy.from_settings(settings)
    if not dry_run and not pat and not settings.github_token:
        raise RemediationConfigError(
            f"set {PAT_VARIABLE} on the server to a personal access token with the Work Items (Read & write) "
            f"scope, or {GITHUB_TOKEN_VARIABLE} to a GitHub token with issues: write, or use --dry-run"
        )
    owners = OwnerPolicy.from_settings(settings)
    clients = _Clients(pat, settings.github_token)
    outcomes: List[RemediationOutcome] = []
    created = 0
    with sessions() as session:
        planned = plan.images(session, filters, principal)
    for digest, image in planned.items():
        trail = image.trail
        if trail is None:
            outcomes.append(
                RemediationOutcome(
                    digest=digest,
                    status="skipped",
                    reason="no pipeline run is known for this image (a coverage gap)",
                )
            )
            continue
        destination = route(trail, policy)
        tracker = destination.tracker if isinstance(destination, Destination) else trail.system
        assignee, assignee_source, owner = _assignee(trail, tracker, owners)
        base = dict(
            digest=digest,
            organization=trail.organization,
            project=trail.project,
            assigned_to=assignee,
            owner_source=assignee_source,
        )
        if trail.system in ("azure-devops", "github"):
            base["tracker"] = trail.system
        with sessions() as session:
            found = plan.findings(session, digest, filters)
            cve_ids = sorted({f.vulnerability_id for f in found})
            if not cve_ids:
                outcomes.append(
                    RemediationOutcome(
                        **base, status="skipped", reason=f"no finding at {filters.min_severity} or above"
                    )
                )
                continue
            cve_hash = cve_set_hash(cve_ids)
            existing = remediation_reads.filed_item(session, digest, cve_hash)
            previous = remediation_reads.newest_item(session, digest)
        top = plan.top_severity(found)
        base.update(title=plan.title(image, found), cve_ids=cve_ids)
        if existing is not None:
            outcomes.append(
                RemediationOutcome(
                    **base,
                    status="exists",
                    work_item_id=existing.work_item_id,
                    work_item_url=existing.work_item_url,
                    reason=f"{'an issue' if existing.tracker == SYSTEM_GITHUB else 'a work item'} for this image "
                    "and CVE set exists",
                )
            )
            continue
        if not isinstance(destination, Destination):
            # Checked in a dry run too, so the plan never lists an item that cannot be created.
            outcomes.append(RemediationOutcome(**base, status="skipped", reason=destination))
            continue
        base.update(target=destination.web_url, project=destination.container)
        if created >= max_items:
            outcomes.append(
                RemediationOutcome(**base, status="skipped", reason=f"max_items={max_items} reached")
            )
            continue
        item_marker = plan.marker(digest, cve_hash)
        if destination.tracker == SYSTEM_GITHUB:
            labels = [ISSUE_LABEL, top]
            body = plan.markdown_body(image, found, previous, owner, item_marker)
            item_type = GITHUB_ITEM_TYPE
        else:
            labels = ["imagetrail", top]
            body = plan.html_description(image, found, previous, owner)
            item_type = work_item_type
        base.update(labels=labels)
        if dry_run:
            outcomes.append(RemediationOutcome(**base, status="would-create", body=body))
            created += 1
            continue
        note = None
        try:
            client = clients.get(destination)
            if destination.tracker == SYSTEM_GITHUB:
                item = client.find(destination.container, item_marker)
                if item is not None:
                    _record(sessions, destination, trail, image, digest, cve_hash, cve_ids, item, item_type)
                    outcomes.append(
                        RemediationOutcome(
                            **base,
                            status="exists",
                            work_item_id=item.id,
                            work_item_url=item.url,
                            reason="the repository has an issue for this image and CVE set",
                        )
                    )
                    continue
                item = client.create(
                    destination.container, base["title"], body, labels, [assignee] if assignee else []
                )
            else:
                item, note = _create_work_item(client, destination, work_item_type, base, body, labels, trail)
        except TrackerError as exc:
            outcomes.append(RemediationOutcome(**base, status="failed", reason=str(exc)))
            continue
        _record(sessions, destination, trail, image, digest, cve_hash, cve_ids, item, item_type)
        created += 1
        outcomes.append(
            RemediationOutcome(
                **base, status="created", work_item_id=item.id, work_item_url=item.url, reason=note
            )
        )
    return RemediationAnswer(dry_run=dry_run, work_item_type=work_item_type, outcomes=outcomes)


def _create_work_item(
    client,
    destination: Destination,
    work_item_type: str,
    base: dict,
    body: str,
    labels: List[str],
    trail: Trail,
):
    """Create the work item; when the organisation does not know the assignee, create it unassigned."""
    assignee = base.get("assigned_to")
    document = _document(base["title"], body, "; ".join(labels), assignee, trail.run_id)
    try:
        return client.create(destination.container, work_item_type, document), None
    except TrackerError as exc:
        # Only a refused assignee is retried: any other error may have left an item behind.
        if not assignee or not ("assigned to" in str(exc).lower() or "identity" in str(exc).lower()):
            raise
        first_error = str(exc)
    item = client.create(
        destination.container,
        work_item_type,
        _document(base["title"], body, "; ".join(labels), None, trail.run_id),
    )
    base.update(assigned_to=None, owner_source=None)
    return item, f"created unassigned: {assignee} was refused ({first_error[:200]})"


def _record(
    sessions, destination: Destination, trail: Trail, image, digest, cve_hash, cve_ids, item, item_type
):
    remediation_items.record(
        sessions,
        tracker=destination.tracker,
        digest=digest,
        cve_hash=cve_hash,
        cve_ids=cve_ids,
        organization=trail.organization,
        project=destination.container,
        item_id=item.id,
        item_url=item.url,
        item_type=item_type,
        pipeline_id=trail.pipeline_key,
        image_repository=f"{image.rows[0].registry}/{image.rows[0].repository}",
    )


def _document(
    title: str, description: str, tags: str, assigned_to: Optional[str], build_id: str
) -> List[dict]:
    """The JSON Patch document of Work Items - Create."""
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


__all__ = [
    "remediate",
    "RemediationAnswer",
    "RemediationOutcome",
    "RemediationConfigError",
    "DEFAULT_MIN_SEVERITY",
    "DEFAULT_WORK_ITEM_TYPE",
    "UNTRUSTED_REASON",
    "cve_set_hash",
    "server_collection_urls",
    "trusted_organization_url",
]
