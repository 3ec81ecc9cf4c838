"""``imagetrail reconcile``: ingest reports kept with Azure DevOps runs while the backend was down.

When the collector cannot reach the backend it attaches the report to the run
(``##vso[task.addattachment type=imagetrail.report;name=report-<hex>.json]``). This command
lists the project's recent builds, downloads those attachments with the ``azure-devops``
package, and posts them to the backend, which recognises reports it already has by reportId.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator, List, Optional, Sequence, Tuple

from imagetrail.client.api import ApiClient, ApiError

ATTACHMENT_TYPE = "imagetrail.report"
# .../_apis/build/builds/{buildId}/{timelineId}/{recordId}/attachments/{type}/{name}
_ATTACHMENT_HREF = re.compile(r"/builds/(?P<build>\d+)/(?P<timeline>[0-9a-fA-F-]{36})/(?P<record>[0-9a-fA-F-]{36})/"
                              r"attachments/")
MAX_ATTACHMENT_BYTES = 16 * 1024 * 1024


@dataclass
class Outcome:
    created: int = 0
    duplicate: int = 0
    failed: List[str] = field(default_factory=list)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagetrail reconcile",
        description="Ingest ImageTrail reports attached to recent Azure DevOps runs (kept there when the backend "
                    "was unreachable). Posts them with IMAGETRAIL_URL and IMAGETRAIL_API_KEY (an ingest key).")
    parser.add_argument("--org-url", required=True, help="organisation URL, e.g. https://dev.azure.com/ORG")
    parser.add_argument("--project", required=True, help="project name or id")
    parser.add_argument("--since", type=float, default=2.0, help="look at builds of the last DAYS days (default 2)")
    parser.add_argument("--pat-env", default="AZURE_DEVOPS_PAT",
                        help="environment variable holding a PAT with Build (read) scope (default AZURE_DEVOPS_PAT)")
    parser.add_argument("--max-builds", type=int, default=1000)
    parser.add_argument("--url", help="backend URL (default: IMAGETRAIL_URL)")
    return parser


def _builds_with_reports(build_client, project: str, since: datetime, top: int) -> Iterator[Tuple[int, object]]:
    for build in build_client.get_builds(project, min_time=since, top=top) or []:
        for attachment in build_client.get_attachments(project, build.id, ATTACHMENT_TYPE) or []:
            yield build.id, attachment


def _self_href(attachment) -> str:
    """The attachment's download link. The package maps ``_links`` to a ReferenceLinks model whose
    ``links`` field is never in the JSON, so the links end up in ``additional_properties``."""
    links = getattr(attachment, "_links", None)
    if links is None:
        return ""
    found = (getattr(links, "links", None) or getattr(links, "additional_properties", None) or {}).get("self")
    return (found or {}).get("href", "") if isinstance(found, dict) else ""


def _download(build_client, project: str, build_id: int, attachment) -> bytes:
    href = _self_href(attachment)
    match = _ATTACHMENT_HREF.search(href)
    if not match:
        raise ValueError(f"attachment {attachment.name!r} of build {build_id} has no download link")
    chunks, size = [], 0
    for chunk in build_client.get_attachment(project, build_id, match["timeline"], match["record"],
                                             ATTACHMENT_TYPE, attachment.name):
        size += len(chunk)
        if size > MAX_ATTACHMENT_BYTES:
            raise ValueError(f"attachment {attachment.name!r} of build {build_id} is larger than "
                             f"{MAX_ATTACHMENT_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def reconcile(build_client, api: ApiClient, project: str, since: datetime, top: int) -> Outcome:
    outcome = Outcome()
    for build_id, attachment in _builds_with_reports(build_client, project, since, top):
        where = f"build {build_id} attachment {attachment.name}"
        try:
            report = json.loads(_download(build_client, project, build_id, attachment))
            answer = api.post("/v1/reports", json=report) or {}
        except (ValueError, ApiError) as exc:
            outcome.failed.append(f"{where}: {exc}")
            continue
        if answer.get("status") == "duplicate":
            outcome.duplicate += 1
        else:
            outcome.created += 1
    return outcome


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    pat = os.environ.get(args.pat_env)
    if not pat:
        print(f"imagetrail reconcile: set {args.pat_env} to a personal access token with Build (read) scope",
              file=sys.stderr)
        return 2
    from azure.devops.connection import Connection
    from azure.devops.exceptions import AzureDevOpsClientRequestError, AzureDevOpsServiceError
    from msrest.authentication import BasicAuthentication
    from msrest.exceptions import ClientRequestError

    since = datetime.now(timezone.utc) - timedelta(days=args.since)
    try:
        connection = Connection(base_url=args.org_url.rstrip("/"), creds=BasicAuthentication("", pat))
        build_client = connection.clients.get_build_client()
        outcome = reconcile(build_client, ApiClient(url=args.url), args.project, since, args.max_builds)
    except (AzureDevOpsClientRequestError, AzureDevOpsServiceError, ClientRequestError) as exc:
        print(f"imagetrail reconcile: Azure DevOps request failed at {args.org_url}: "
              f"{str(exc).splitlines()[0][:300]}", file=sys.stderr)
        return 1
    for failure in outcome.failed:
        print(f"imagetrail reconcile: {failure}", file=sys.stderr)
    print(f"reconciled {args.project}: {outcome.created} new, {outcome.duplicate} already stored, "
          f"{len(outcome.failed)} failed")
    return 1 if outcome.failed else 0
