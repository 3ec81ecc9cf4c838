"""``imagetrail owners resolve [filters]``: resolve and store the owners of the query's images, in order,
each with its source (CODEOWNERS rule, commit author, configured team, requester)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.client.query import add_filter_arguments, filter_params


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagetrail owners", description=__doc__)
    parser.add_argument("action", choices=("resolve",))
    add_filter_arguments(parser)
    parser.add_argument(
        "--max-runs", type=int, default=100, help="resolve at most this many runs (default 100)"
    )
    parser.add_argument("--json", action="store_true", help="print the backend's answer as JSON")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    filters = {
        k: (v == "true" if k in ("exposed", "fix_available", "running", "untraced_push") else v)
        for k, v in filter_params(args).items()
    }
    try:
        answer = ApiClient(timeout=600).post(
            "/v1/owners/resolve", json={"filters": filters, "max_runs": args.max_runs}
        )
    except ApiError as exc:
        print(f"imagetrail owners: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    for run in answer["runs"]:
        print(f"{run['organization']}/{run['project']} {run.get('pipeline') or ''} run {run['run_id']}:")
        for n, owner in enumerate(run["owners"], 1):
            who = owner.get("name") or owner.get("login") or owner.get("email")
            contact = owner.get("email") or owner.get("login") or ""
            print(
                f"  {n}. {who} {contact if contact != who else ''} [{owner['source']}, {owner['evidence']}]"
                f"{' ' + owner['detail'] if owner.get('detail') else ''}"
            )
        for problem in run["problems"]:
            print(f"  ! {problem}")
    if not answer["runs"]:
        print("no matching images with a pipeline run")
    return 0
