"""``imagetrail trace DIGEST_OR_REFERENCE [--limit N] [--all] [--json]``: which runs pushed this image,
and who owns the fix. The newest ``--limit`` pushes; older pages only with ``--all``."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.client.output import Column, add_output_arguments, emit, short_digest
from imagetrail.facts import CLAIMED, DISPUTED, VERIFIED, summary
from imagetrail.reference import DIGEST_RE
from imagetrail.views.columns import utc_iso
from imagetrail.views.trace import TraceAnswer

DEFAULT_LIMIT, MAX_LIMIT = 50, 500  # the API's default and largest page


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"give a number of pushes from 1 to {MAX_LIMIT}, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagetrail trace",
        description="Trace an image digest (sha256:...) or reference (registry/repository:tag) to the "
                    "pipeline runs that pushed it. Uses IMAGETRAIL_URL and IMAGETRAIL_API_KEY.")
    parser.add_argument("target", metavar="DIGEST_OR_REFERENCE")
    parser.add_argument("--limit", type=_limit, default=DEFAULT_LIMIT,
                        help=f"pushes per page, newest first (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})")
    parser.add_argument("--all", action="store_true", help="fetch every older page too (may be thousands of "
                                                          "pushes for a busy tag)")
    # text: every push in detail (the default); table: one line per push
    add_output_arguments(parser, formats=("text", "table", "json", "csv"), default="text")
    return parser


def trail_pages(client: ApiClient, target: str, limit: int = DEFAULT_LIMIT) -> Iterator[Dict[str, Any]]:
    """The trail one page at a time, newest first; the next page is fetched only when asked for."""
    target = target.strip()
    before: Optional[str] = None
    while True:
        params: Dict[str, Any] = {"limit": limit, **({"before": before} if before else {})}
        if DIGEST_RE.match(target.lower()):
            page = client.get(f"/v1/images/{target.lower()}/trail", params=params)
        else:
            page = client.get("/v1/trail", params={"reference": target, **params})
        yield page
        before = page.get("next")
        if not page.get("has_more") or not before:
            return


def fetch_trail(client: ApiClient, target: str, limit: int = DEFAULT_LIMIT, every_page: bool = False) -> Dict[str, Any]:
    """The first page, or (``every_page``) all pages merged into one trail."""
    pages = trail_pages(client, target, limit)
    trail = next(pages)
    if every_page:
        for page in pages:
            trail["pushes"] += page.get("pushes") or []
            trail["has_more"], trail["next"] = page.get("has_more", False), page.get("next")
    return trail


_short = short_digest
PUSH_COLUMNS = tuple(Column(n, required=n in ("reference", "digest", "run"), whole=n == "digest") for n in (
    "reference", "digest", "run", "pipeline", "pushed_at", "commit", "requester", "matched_by", "organization",
    "project", "run_url", "evidence"))


def push_rows(trail: Dict[str, Any], wide: bool = False) -> List[Dict[str, str]]:
    """One row per push, read through the API's response model."""
    rows = []
    for push in TraceAnswer.model_validate(trail).pushes:
        requester = push.requester
        rows.append({
            "reference": push.reference,
            "digest": (push.digest or "") if wide else _short(push.digest),
            "run": push.run.number or push.run.id,
            "pipeline": push.pipeline.name or push.pipeline.id,
            "pushed_at": utc_iso(push.pushed_at),
            "commit": (push.source.commit or "") if wide else (push.source.commit or "")[:10],
            "requester": (requester.email or requester.name or "") if requester else "",
            "matched_by": push.matched_by,
            "organization": push.organization,
            "project": push.project,
            "run_url": push.run.url or "",
            "evidence": summary({name: fact.evidence for name, fact in push.facts.items()}),
        })
    return rows


def hidden_note(trail: Dict[str, Any]) -> str:
    """What the backend says its reader's permissions hid (``hidden_by_permissions``; absent from older backends)."""
    if not trail.get("hidden_by_permissions"):
        return ""
    return "no push you may read; pushes in organisations your permissions hide exist"


def _tag(facts: Dict[str, Any], *names: str) -> str:
    """' [claimed]' / ' [disputed]' after a value that is not verified (verified values stay unmarked);
    for several facts shown together, the weakest."""
    shown = {facts[n]["evidence"] for n in names if n in facts} - {VERIFIED}
    weakest = next((level for level in (DISPUTED, CLAIMED) if level in shown), None)
    return f" [{weakest}]" if weakest else ""


def _evidence_lines(facts: Dict[str, Any]) -> List[str]:
    lines = [f"  facts      {summary({name: known['evidence'] for name, known in facts.items()})}"]
    for name, known in facts.items():
        for stated in known.get("competing") or []:
            lines.append(f"    {name} {stated['value']} ({stated['evidence']}, sent by {stated['credential_kind']} "
                         f"{stated['credential_id']})")
    return lines


def render_trail(trail: Dict[str, Any]) -> str:
    lines: List[str] = [f"trail of {trail['query']}"]
    for related in trail.get("related") or []:
        platform = "/".join(p for p in (related.get("os"), related.get("architecture"), related.get("variant")) if p)
        what = "listed by index" if related["relation"] == "index" else f"platform {platform or '?'}"
        lines.append(f"  {what}: {related['digest']}")
    pushes = trail.get("pushes") or []
    if not pushes:
        lines.append(hidden_note(trail) or "no push of this image is known from a pipeline (or none you may read)")
    for push in pushes:
        run, source, requester = push["run"], push["source"], push.get("requester") or {}
        facts = push.get("facts") or {}
        pipeline = push["pipeline"].get("name") or push["pipeline"].get("id")
        lines += [
            "",
            f"{push['reference']}  ({_short(push.get('digest'))}, {push['matched_by']})",
            f"  pushed     {utc_iso(push.get('pushed_at')) or '-'}",
            f"  pipeline   {push['organization']} / {push['project']} / {pipeline}"
            f"{_tag(facts, 'organization', 'project', 'pipeline')}",
            f"  run        {run.get('number') or run['id']} (attempt {run['attempt']}){_tag(facts, 'run')}  "
            f"{run.get('url') or ''}".rstrip(),
            f"  job        {push['job'].get('name') or push['job']['id']}",
            "  source     " + " ".join(f"{source[key]}{_tag(facts, fact)}" for key, fact in (
                ("repository", "repository"), ("branch", "branch"), ("commit", "commit")) if source.get(key))
            if source.get("repository") or source.get("commit") else "  source     -",
        ]
        if source.get("commit_url"):
            lines.append(f"  commit     {source['commit_url']}")
        owner = " ".join(p for p in (requester.get("name"), f"<{requester['email']}>" if requester.get("email")
                                     else None) if p)
        lines.append(f"  requester  {owner or '-'}{_tag(facts, 'requester')}")
        evidence = push["evidence"]
        lines.append(f"  evidence   report {_short(evidence['report_id'])} received {utc_iso(evidence['received_at'])} "
                     f"from {evidence['identity_kind']}")
        if facts:
            lines += _evidence_lines(facts)
        for event in push.get("registry_events") or []:
            lines.append(f"  registry   also reported by the registry: {_who(event)}")
    lines += _registry_side(trail)
    if trail.get("has_more"):
        lines += ["", f"older pushes exist: rerun with --all, or a larger --limit (at most {MAX_LIMIT})"]
    return "\n".join(lines)


def _who(event: Dict[str, Any]) -> str:
    return (f"{event.get('actor') or 'anonymous'} from {event.get('source_addr') or '?'} "
            f"({event.get('user_agent') or 'unknown client'}) at {utc_iso(event['pushed_at'])}")


def _registry_side(trail: Dict[str, Any]) -> List[str]:
    """Pushes only a registry reported, and what the image claims about its origin."""
    lines: List[str] = []
    for event in trail.get("registry_pushes") or []:
        tag = f":{event['tag']}" if event.get("tag") else f"@{_short(event['digest'])}"
        lines += ["", f"{event['registry']}/{event['repository']}{tag}  (reported by the registry only)",
                  f"  pushed by  {_who(event)}"]
    for claim in trail.get("claims") or []:
        facts = claim.get("facts") or {}
        said = ", ".join(f"{k} {facts[k]}" for k in ("organization", "project", "pipeline", "run_id", "repository_uri",
                                                    "branch", "commit", "builder_id") if facts.get(k))
        lines += ["", f"{claim['kind']} ({claim['evidence']}, {claim['source']})", f"  says       {said or '-'}"]
        for run in claim.get("runs") or []:
            lines.append(f"  run        {run['organization']} / {run['project']} / {run.get('pipeline') or run['pipeline_id']}"
                         f" run {run.get('run_number') or run['run_id']} (by {run['matched_by']}) "
                         f"{run.get('run_url') or ''}".rstrip())
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        trail = fetch_trail(ApiClient(url=args.url), args.target, args.limit, every_page=args.all)
    except ApiError as exc:
        print(f"imagetrail trace: {exc}", file=sys.stderr)
        return 1
    if args.format == "text":
        print(render_trail(trail))
    else:
        rows = push_rows(trail, wide=args.wide or args.format == "csv")
        empty = hidden_note(trail) or "no push of this image is known from a pipeline (or none you may read)"
        more = f"older pushes exist: rerun with --all, or a larger --limit (at most {MAX_LIMIT})"
        emit(args, trail, rows, PUSH_COLUMNS, more if trail.get("has_more") else "", empty=empty)
    return 0 if trail.get("pushes") or trail.get("registry_pushes") else 3
