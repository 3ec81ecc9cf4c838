"""``imagetrail remediate``: one item per vulnerable image in the query's rows, in the tracker of the CI
system that built it (Azure DevOps work item, or GitHub issue in the source repository)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.client.output import Column, add_output_arguments, emit, short_digest
from imagetrail.client.query import FilterError, add_filter_arguments, filter_body
from imagetrail.views.remediation import CloseSuggestion, RemediationAnswer

COLUMNS = tuple(Column(n, required=n in ("status", "digest"), whole=n == "digest") for n in (
    "status", "where", "digest", "item", "title", "assigned_to", "owner_source", "reason", "item_url"))
CLOSE_COLUMNS = tuple(Column(n, required=n in ("item_id", "reason")) for n in (
    "tracker", "where", "item_id", "reason", "item_url"))


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
    add_output_arguments(parser)
    parser.add_argument(
        "--close-suggestions", action="store_true",
        help="list items a newer push of the same pipeline no longer needs (its scan has none of the CVEs)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    client = ApiClient(url=args.url, timeout=600)
    if args.close_suggestions:
        return _close_suggestions(client, args)
    try:
        body = {
            "filters": filter_body(args),
            "dry_run": args.dry_run,
            "work_item_type": args.work_item_type,
            "max_items": args.max_items,
        }
        answer = client.post("/v1/remediations", json=body)
    except FilterError as exc:
        print(f"imagetrail remediate: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"imagetrail remediate: {exc}", file=sys.stderr)
        return 1
    outcomes = RemediationAnswer.model_validate(answer).outcomes
    wide = args.wide or args.format == "csv"
    rows = []
    for outcome in outcomes:
        where = f"{outcome.organization or '-'}/{outcome.project or '-'}"
        if outcome.tracker == "github":  # project is owner/repo
            where = f"github:{outcome.project}"
        rows.append({**outcome.model_dump(mode="json"), "where": where,
                     "digest": outcome.digest if wide else short_digest(outcome.digest),
                     "item": f"#{outcome.work_item_id}" if outcome.work_item_id else ""})
    emit(args, answer, rows, COLUMNS, empty="no matching images")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _close_suggestions(client: ApiClient, args: argparse.Namespace) -> int:
    try:
        answer = client.get("/v1/remediations/close-suggestions")
    except ApiError as exc:
        print(f"imagetrail remediate: {exc}", file=sys.stderr)
        return 1
    suggestions = [CloseSuggestion.model_validate(item) for item in answer]
    rows = [{**s.model_dump(mode="json"), "where": f"{s.organization}/{s.project}"} for s in suggestions]
    emit(args, answer, rows, CLOSE_COLUMNS, empty="no item to suggest closing")
    return 0
