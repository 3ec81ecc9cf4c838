"""``imagetrail query``: explorer queries over running, exposed and vulnerable images and their owners."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.facts import summary
from imagetrail.sanitize import csv_cell

SEVERITIES = ("low", "medium", "high", "critical")
SORTS = ("severity", "-severity", "cluster", "namespace", "workload", "image", "digest")


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (combined with AND)")
    group.add_argument("--exposed", action="store_true", help="only containers reachable from the internet")
    running = group.add_mutually_exclusive_group()
    running.add_argument("--running", dest="running", action="store_const", const="true",
                         help="only images a cluster runs (default: running or not)")
    running.add_argument("--not-running", dest="running", action="store_const", const="false",
                         help="only pushed images no cluster runs")
    group.add_argument("--cluster")
    group.add_argument("--namespace")
    group.add_argument("--min-severity", choices=SEVERITIES)
    group.add_argument("--cve", help="a vulnerability id, e.g. CVE-2021-36159")
    group.add_argument("--fix-available", action="store_true", help="only findings with a fixed version")
    group.add_argument("--untraced-push", action="store_true",
                       help="only images a registry reported pushed that no report, label or provenance explains")
    group.add_argument("--registry", help="e.g. myregistry.azurecr.io or docker.io")
    group.add_argument("--repository", help="e.g. team/app (Docker Hub: library/nginx)")
    group.add_argument(
        "--org", help="Azure DevOps organisation (or GitHub owner) of the run that pushed the image"
    )
    group.add_argument("--project")
    group.add_argument("--pipeline", help="pipeline name or definition id")
    group.add_argument(
        "--pushed-after", metavar="TIME", help="ISO 8601, e.g. 2024-05-01 or 2024-05-01T10:00Z"
    )
    group.add_argument("--pushed-before", metavar="TIME")


def filter_params(args: argparse.Namespace) -> Dict[str, Any]:
    params: Dict[str, Any] = {}
    if args.exposed:
        params["exposed"] = "true"
    if args.fix_available:
        params["fix_available"] = "true"
    if getattr(args, "untraced_push", False):
        params["untraced_push"] = "true"
    if getattr(args, "running", None):
        params["running"] = args.running
    for name in (
        "cluster",
        "namespace",
        "min_severity",
        "cve",
        "registry",
        "repository",
        "org",
        "project",
        "pipeline",
        "pushed_after",
        "pushed_before",
    ):
        value = getattr(args, name)
        if value:
            params[name] = value
    return params


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagetrail query", description=__doc__)
    add_filter_arguments(parser)
    parser.add_argument(
        "--gaps", action="store_true",
        help="list running images never traced to a pipeline, and why; then pushes a registry reported that "
             "nothing explains (no collector report, label or provenance), with counts per registry and actor",
    )
    parser.add_argument(
        "--coverage",
        action="store_true",
        help="which clusters, registries, projects and scanners report, and when",
    )
    parser.add_argument(
        "--by-pipeline", action="store_true",
        help="pipelines that pushed images with --min-severity (default high) findings in the last --days days",
    )
    parser.add_argument("--days", type=int, default=7, help="with --by-pipeline: days back (default 7)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    parser.add_argument("--sort", choices=SORTS, default="-severity")
    parser.add_argument("--page", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=50)
    return parser


def _flat(row: Dict[str, Any]) -> Dict[str, Any]:
    vulns = row.get("vulnerabilities") or {}
    counts = vulns.get("counts") or {}
    trail = row.get("trail") or {}
    running = row.get("running", True)
    return {
        "cluster": row["cluster"] if running else "(not running)",
        "namespace": row["namespace"] or "",
        "workload": f"{row['workload_kind']}/{row['workload_name']}" if running else "",
        "container": row["container"] or "",
        "exposure": "; ".join(e["reason"] for e in row.get("exposure") or []),
        "image": row["image"],
        "digest": row.get("digest") or f"unknown: {row.get('digest_error')}",
        "critical": counts.get("critical", ""),
        "high": counts.get("high", ""),
        "medium": counts.get("medium", ""),
        "low": counts.get("low", ""),
        "top_cves": ", ".join(
            f"{c['id']}({c.get('fixed_version') or 'no fix'})" for c in vulns.get("top") or []
        ),
        "organization": trail.get("organization", ""),
        "project": trail.get("project", ""),
        "pipeline": trail.get("pipeline", ""),
        "run": trail.get("run_number") or trail.get("run_id", ""),
        "run_url": trail.get("run_url", ""),
        "repository": trail.get("repository", ""),
        "branch": trail.get("branch", ""),
        "commit": trail.get("commit", ""),
        "owner": trail.get("owner_name", ""),
        "owner_email": trail.get("owner_email", ""),
        "evidence": summary(trail.get("evidence") or {}),
        "owners": "; ".join(
            f"{o.get('name') or o.get('login') or o.get('email')} ({o['source']})" for o in trail.get("owners") or []
        ),
    }


TABLE_COLUMNS = (
    "cluster",
    "namespace",
    "workload",
    "container",
    "critical",
    "high",
    "top_cves",
    "project",
    "commit",
    "owner_email",
    "exposure",
)


def _table(rows: List[Dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        text = str(value if value is not None else "")
        return text if len(text) <= 48 else text[:45] + "..."

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _csv(rows: List[Dict[str, Any]]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({name: csv_cell(value) for name, value in row.items()} for row in rows)
    return buffer.getvalue()


def _emit(
    fmt: str, answer: Dict[str, Any], rows: List[Dict[str, Any]], columns: Sequence[str], footer: str
) -> None:
    if fmt == "json":
        print(json.dumps(answer, indent=2))
    elif fmt == "csv":
        sys.stdout.write(_csv(rows))
    else:
        print(_table(rows, columns) if rows else "no rows")
        print(footer)


PIPELINE_COLUMNS = (
    "organization", "project", "pipeline", "images", "running", "not_running", "critical", "high", "last_pushed_at"
)
PUSH_COLUMNS = ("registry", "repository", "tag", "digest", "actor", "source_addr", "pushed_at", "attribution")


def _push_params(params: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in params.items() if k in ("registry", "page", "page_size")}


def _untraced_pushes(answer: Dict[str, Any]) -> None:
    rows = answer["pushes"]
    print("\nuntraced pushes (a registry reported them; no collector report, label or provenance explains them):")
    print(_table(rows, PUSH_COLUMNS) if rows else "none")
    print(f"page {answer['page']}: {len(rows)} of {answer['total']} untraced pushes")
    for title, key in (("per registry", "by_registry"), ("per actor", "by_actor")):
        if answer[key]:
            print(f"{title}: " + ", ".join(f"{c['name'] or '(anonymous)'} {c['pushes']}" for c in answer[key]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    client = ApiClient()
    params = filter_params(args)
    try:
        if args.coverage:
            answer = client.get("/v1/coverage")
            if args.format == "json":
                print(json.dumps(answer, indent=2))
                return 0
            for section in ("clusters", "registries", "projects", "scanners"):
                print(f"{section}:")
                rows = answer[section]
                print(_table(rows, list(rows[0])) if rows else "  none")
            return 0
        if args.by_pipeline:
            answer = client.get("/v1/query/pipelines", params={**params, "days": args.days})
            rows = answer["pipelines"]
            footer = f"{len(rows)} pipelines pushed images with {answer['min_severity']}+ findings"
            _emit(args.format, answer, rows, PIPELINE_COLUMNS, f"{footer} since {answer['since']}")
            return 0
        params.update(page=args.page, page_size=args.page_size)
        if args.gaps:
            answer = client.get("/v1/coverage/gaps", params=params)
            pushes = client.get("/v1/coverage/untraced-pushes", params=_push_params(params))
            if args.format == "json":
                print(json.dumps({**answer, "untraced_pushes": pushes}, indent=2))
                return 0
            rows = answer["gaps"]
            _emit(
                args.format,
                answer,
                rows,
                ("cluster", "namespace", "workload_name", "container", "image", "reason", "detail"),
                f"page {answer['page']}: {len(rows)} of {answer['total']} untraced containers",
            )
            if args.format == "table":
                _untraced_pushes(pushes)
            return 0
        params["sort"] = args.sort
        answer = client.get("/v1/query", params=params)
    except ApiError as exc:
        print(f"imagetrail query: {exc}", file=sys.stderr)
        return 1
    rows = [_flat(row) for row in answer["rows"]]
    _emit(
        args.format,
        answer,
        rows,
        TABLE_COLUMNS,
        f"page {answer['page']}: {len(rows)} of {answer['total']} rows (sorted by {answer['sort']})",
    )
    return 0
