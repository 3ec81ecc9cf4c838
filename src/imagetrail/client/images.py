"""``imagetrail images --repository R | --pipeline P | --run N``: images pushed, newest first."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional, Sequence

from pydantic import TypeAdapter

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.client.output import Column, add_output_arguments, emit, short_digest
from imagetrail.views.columns import utc_iso
from imagetrail.views.trace import ImageRow

IMAGE_ROWS = TypeAdapter(List[ImageRow])
COLUMNS = tuple(Column(n, required=n in ("image", "digest", "run"), whole=n == "digest") for n in (
    "image", "digest", "run", "pipeline", "pushed_at", "commit", "organization", "project", "requester"))


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
    add_output_arguments(parser)
    return parser


def image_rows(answer: List[Dict[str, Any]], wide: bool = False) -> List[Dict[str, str]]:
    """The listing, read through the API's response model, one row per pushed image."""
    return [{
        "image": row.reference,
        "digest": (row.digest or "-") if wide else short_digest(row.digest),
        "run": row.run.number or row.run.id,
        "pipeline": row.pipeline.name or row.pipeline.id,
        "pushed_at": utc_iso(row.pushed_at),
        "commit": (row.commit or "") if wide else (row.commit or "")[:10],
        "organization": row.organization,
        "project": row.project,
        "requester": row.requester or "",
    } for row in IMAGE_ROWS.validate_python(answer)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    filters = {k: getattr(args, k) for k in ("repository", "organization", "project", "pipeline", "run")
               if getattr(args, k)}
    if not filters:
        print("imagetrail images: give --repository, --pipeline or --run (optionally --organization/--project)",
              file=sys.stderr)
        return 2
    try:
        answer = ApiClient(url=args.url).get("/v1/images", params={**filters, "limit": args.limit})
    except ApiError as exc:
        print(f"imagetrail images: {exc}", file=sys.stderr)
        return 1
    rows = image_rows(answer, wide=args.wide or args.format == "csv")
    emit(args, answer, rows, COLUMNS, empty="no images found (or none you may read)")
    return 0
