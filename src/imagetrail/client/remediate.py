"""``imagetrail remediate``: one item per vulnerable image in the query's rows, in the tracker of the CI
system that built it (Azure DevOps work item, or GitHub issue in the source repository)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.client.query import add_filter_arguments, filter_params


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagetrail remediate", description=__doc__)
    add_filter_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="print what would be created; create nothing")
    parser.add_argument(
        "--work-item-type",
        default="Bug",
        help="Azure DevOps work item type (default Bug: Agile, Scrum, CMMI; use Issue for Basic projects)",
    )
    parser.add_argument("--max-items", type=int, default=100, help="create at most this many (default 100)")
    parser.add_argument("--json", action="store_true", help="print the backend's answer as JSON")
    parser.add_argument(
        "--close-suggestions", action="store_true",
        help="list items a newer push of the same pipeline no longer needs (its scan has none of the CVEs)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.close_suggestions:
        return _close_suggestions(args.json)
    filters = {
        k: (v == "true" if k in ("exposed", "fix_available", "running", "untraced_push") else v)
        for k, v in filter_params(args).items()
    }
    body = {
        "filters": filters,
        "dry_run": args.dry_run,
        "work_item_type": args.work_item_type,
        "max_items": args.max_items,
    }
    try:
        answer = ApiClient(timeout=600).post("/v1/remediations", json=body)
    except ApiError as exc:
        print(f"imagetrail remediate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        for outcome in answer["outcomes"]:
            where = f"{outcome.get('organization') or '-'}/{outcome.get('project') or '-'}"
            if outcome.get("tracker") == "github":  # project is owner/repo
                where = f"github:{outcome.get('project')}"
            item = f" #{outcome['work_item_id']}" if outcome.get("work_item_id") else ""
            reason = f" ({outcome['reason']})" if outcome.get("reason") else ""
            owner = f" -> {outcome['assigned_to']} ({outcome['owner_source']})" if outcome.get("assigned_to") else ""
            print(
                f"{outcome['status']:<12} {where:<40} {outcome['digest'][:19]}{item} "
                f"{outcome.get('title') or ''}{owner}{reason}"
            )
        if not answer["outcomes"]:
            print("no matching images")
    return 1 if any(o["status"] == "failed" for o in answer["outcomes"]) else 0


def _close_suggestions(as_json: bool) -> int:
    try:
        answer = ApiClient().get("/v1/remediations/close-suggestions")
    except ApiError as exc:
        print(f"imagetrail remediate: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(answer, indent=2))
        return 0
    for suggestion in answer:
        where = f"{suggestion['tracker']} {suggestion['organization']}/{suggestion['project']}"
        print(f"close? {where} #{suggestion['item_id']} {suggestion.get('item_url') or ''}: {suggestion['reason']}")
    if not answer:
        print("no item to suggest closing")
    return 0
