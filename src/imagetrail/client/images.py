"""``imagetrail images --repository R | --pipeline P | --run N``: images pushed, newest first."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagetrail images",
                                     description="List images by repository, pipeline or run. Uses IMAGETRAIL_URL "
                                                 "and IMAGETRAIL_API_KEY.")
    parser.add_argument("--repository", help="image repository, registry/path[:tag]")
    parser.add_argument("--organization", help="organisation (Azure DevOps) or owner (GitHub)")
    parser.add_argument("--project", help="project (Azure DevOps) or owner/repo (GitHub)")
    parser.add_argument("--pipeline", help="pipeline id or name")
    parser.add_argument("--run", help="run id (Azure DevOps build id, GitHub run id)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--url", help="backend URL (default: IMAGETRAIL_URL)")
    return parser


def render(rows: List[Dict[str, Any]]) -> str:
    if not rows:
        return "no images found (or none you may read)"
    lines = []
    for row in rows:
        pipeline = row["pipeline"].get("name") or row["pipeline"].get("id")
        run = row["run"].get("number") or row["run"]["id"]
        lines.append(f"{(row.get('digest') or '-'):<71}  {row['reference']}  {row.get('pushed_at') or '-'}  "
                     f"{row['organization']}/{row['project']}/{pipeline} #{run}  {row.get('commit') or ''}".rstrip())
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    filters = {k: getattr(args, k) for k in ("repository", "organization", "project", "pipeline", "run")
               if getattr(args, k)}
    if not filters:
        print("imagetrail images: give --repository, --pipeline or --run (optionally --organization/--project)",
              file=sys.stderr)
        return 2
    try:
        rows = ApiClient(url=args.url).get("/v1/images", params={**filters, "limit": args.limit})
    except ApiError as exc:
        print(f"imagetrail images: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    return 0
