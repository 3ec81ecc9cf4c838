"""``imagetrail trace DIGEST_OR_REFERENCE [--json]``: which runs pushed this image, and who owns the fix."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, Dict, List, Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagetrail trace",
        description="Trace an image digest (sha256:...) or reference (registry/repository:tag) to the "
                    "pipeline runs that pushed it. Uses IMAGETRAIL_URL and IMAGETRAIL_API_KEY.")
    parser.add_argument("target", metavar="DIGEST_OR_REFERENCE")
    parser.add_argument("--json", action="store_true", help="print the trail as JSON")
    parser.add_argument("--url", help="backend URL (default: IMAGETRAIL_URL)")
    return parser


def fetch_trail(client: ApiClient, target: str) -> Dict[str, Any]:
    target = target.strip()
    if DIGEST_RE.match(target.lower()):
        return client.get(f"/v1/images/{target.lower()}/trail")
    return client.get("/v1/trail", params={"reference": target})


def _short(digest: Optional[str]) -> str:
    return digest[:19] if digest else "-"


def render_trail(trail: Dict[str, Any]) -> str:
    lines: List[str] = [f"trail of {trail['query']}"]
    for related in trail.get("related") or []:
        platform = "/".join(p for p in (related.get("os"), related.get("architecture"), related.get("variant")) if p)
        what = "listed by index" if related["relation"] == "index" else f"platform {platform or '?'}"
        lines.append(f"  {what}: {related['digest']}")
    pushes = trail.get("pushes") or []
    if not pushes:
        lines.append("no push of this image is known (or none you may read)")
        return "\n".join(lines)
    for push in pushes:
        run, source, requester = push["run"], push["source"], push.get("requester") or {}
        pipeline = push["pipeline"].get("name") or push["pipeline"].get("id")
        lines += [
            "",
            f"{push['reference']}  ({_short(push.get('digest'))}, {push['matched_by']})",
            f"  pushed     {push.get('pushed_at') or '-'}",
            f"  pipeline   {push['organization']} / {push['project']} / {pipeline}",
            f"  run        {run.get('number') or run['id']} (attempt {run['attempt']})  {run.get('url') or ''}".rstrip(),
            f"  job        {push['job'].get('name') or push['job']['id']}",
            f"  source     {source.get('repository') or '-'} {source.get('branch') or ''} "
            f"{source.get('commit') or ''}".rstrip(),
        ]
        if source.get("commit_url"):
            lines.append(f"  commit     {source['commit_url']}")
        owner = " ".join(p for p in (requester.get("name"), f"<{requester['email']}>" if requester.get("email")
                                     else None) if p)
        lines.append(f"  requester  {owner or '-'}")
        evidence = push["evidence"]
        lines.append(f"  evidence   report {_short(evidence['report_id'])} received {evidence['received_at']} "
                     f"from {evidence['identity_kind']}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        trail = fetch_trail(ApiClient(url=args.url), args.target)
    except ApiError as exc:
        print(f"imagetrail trace: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(trail, indent=2) if args.json else render_trail(trail))
    return 0 if trail.get("pushes") else 3
