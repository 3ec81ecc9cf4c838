"""``imagetrail reconcile``: ingest reports kept with Azure DevOps runs while the backend was down.

When the collector cannot reach the backend it attaches the report to the run
(``##vso[task.addattachment type=imagetrail.report;name=report-<hex>.json]``). The backend
reconciles on its own when it has an Azure DevOps identity (server/reconcile); this command does
the same by hand, with the same listing code: it lists the project's recent builds, downloads
those attachments with the ``azure-devops`` package, and posts them to the backend, which
recognises reports it already has by reportId.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import List, Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.client.output import Column, add_output_arguments, emit
from imagetrail.views.writes import IngestAnswer

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
    add_output_arguments(parser)
    return parser


def reconcile(build_client, api: ApiClient, project: str, since: datetime, top: int) -> Outcome:
    from imagetrail.remote.azure_devops_builds import builds_with_reports, download

    outcome = Outcome()
    for build, attachment in builds_with_reports(build_client, project, since, top):
        where = f"build {build.id} attachment {attachment.name}"
        try:
            report = json.loads(download(build_client, project, build.id, attachment, MAX_ATTACHMENT_BYTES))
            answer = IngestAnswer.model_validate(api.post("/v1/reports", json=report))
        except (ValueError, ApiError) as exc:  # ValueError: not JSON, or not the API's answer (pydantic's)
            outcome.failed.append(f"{where}: {exc}")
            continue
        if answer.status == "duplicate":
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
    summary = {"project": args.project, "created": outcome.created, "duplicate": outcome.duplicate,
               "failed": len(outcome.failed)}
    if args.format == "table":
        print(f"reconciled {args.project}: {outcome.created} new, {outcome.duplicate} already stored, "
              f"{len(outcome.failed)} failed")
    else:
        emit(args, {**summary, "failures": outcome.failed}, [summary], [Column(name) for name in summary])
    return 1 if outcome.failed else 0
