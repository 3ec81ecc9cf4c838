"""``imagetrail query``: explorer queries over running, exposed and vulnerable images and their owners."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

from pydantic import BaseModel, ValidationError

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.client.output import Column, add_output_arguments, emit, short_digest, table
from imagetrail.views.columns import EXPLORER_HEADER, explorer_record, utc_iso
from imagetrail.views.coverage import CoverageSummary, GapPage
from imagetrail.views.explorer import ExplorerPage
from imagetrail.views.filters import DEFAULT_SORT, FILTER_FIELDS, SORT_KEYS, ExplorerFilters
from imagetrail.views.pipelines import PipelineReport
from imagetrail.views.registry import UntracedPage


class FilterError(ValueError):
    """A filter the model refuses; the message names the option."""


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of ExplorerFilters (views/filters.py): flag, help and bounds come from there."""
    group = parser.add_argument_group("filters (combined with AND)")
    for spec in FILTER_FIELDS:
        surface = spec.surface
        help_ = surface.help or spec.description
        if surface.widget == "flag":
            group.add_argument(spec.flag, dest=spec.name, action="store_true", help=help_)
        elif surface.widget == "tristate":
            pair = group.add_mutually_exclusive_group()
            pair.add_argument(spec.flag, dest=spec.name, action="store_const", const=True, help=help_)
            pair.add_argument(surface.negative_flag, dest=spec.name, action="store_const", const=False,
                              help=f"the opposite of {spec.flag}")
        elif surface.widget == "choice":
            group.add_argument(spec.flag, dest=spec.name, choices=spec.choices, type=str.lower, help=help_)
        else:
            group.add_argument(spec.flag, dest=spec.name, metavar="TIME" if surface.widget == "date" else None,
                               help=help_)


def filters_from(args: argparse.Namespace) -> ExplorerFilters:
    """The options as the model, checked before anything is sent (the error names the option)."""
    values = {spec.name: getattr(args, spec.name) for spec in FILTER_FIELDS if getattr(args, spec.name, None)
              is not None}
    try:
        return ExplorerFilters(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:5]:
            name = str(error["loc"][0]) if error["loc"] else "filters"
            flag = "--" + name.replace("_", "-")
            problems.append(f"{flag}: {error['msg'].removeprefix('Value error, ')}")
        raise FilterError("; ".join(problems)) from None


def filter_params(args: argparse.Namespace) -> Dict[str, Any]:
    """The filters as ``GET /v1/query`` parameters."""
    return filters_from(args).query_params()


def filter_body(args: argparse.Namespace) -> Dict[str, Any]:
    """The filters as the ``filters`` object of a POST body (remediations, owners)."""
    return filters_from(args).model_dump(mode="json", exclude_defaults=True)


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
    add_output_arguments(parser)
    parser.add_argument("--sort", choices=SORT_KEYS, default=DEFAULT_SORT)
    parser.add_argument("--page", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=50)
    return parser


# Narrow tables name the workload, the image, its short digest and the run; --wide adds every CSV column.
_REQUIRED = ("image", "digest", "run")
_NARROW = ("workload", "cluster", "image", "digest", "critical", "high", "run", "pipeline", "owner_email", "exposure")
TABLE_COLUMNS = tuple(Column(name, required=name in _REQUIRED, whole=name == "digest") for name in _NARROW) + tuple(
    Column(name, wide_only=True) for name in EXPLORER_HEADER if name not in _NARROW
)


def explorer_rows(page: ExplorerPage, wide: bool = False, csv: bool = False) -> List[Dict[str, str]]:
    """The rows of a ``GET /v1/query`` answer as export columns (for ``csv``, exactly the web export's values)."""
    rows = []
    for row in page.rows:
        record = explorer_record(row)
        if csv:
            rows.append(record)
            continue
        if not row.running:
            record["cluster"] = "(not running)"
        if not wide:
            record["digest"] = short_digest(row.digest) if row.digest else f"unknown: {row.digest_error or ''}"
        rows.append(record)
    return rows


PIPELINE_COLUMNS = tuple(Column(n, required=n == "pipeline") for n in (
    "organization", "project", "pipeline", "images", "running", "not_running", "critical", "high", "last_pushed_at"))
PUSH_COLUMNS = tuple(Column(n, required=n in ("repository", "digest")) for n in (
    "registry", "repository", "tag", "digest", "actor", "source_addr", "pushed_at", "attribution"))
GAP_COLUMNS = tuple(Column(n, required=n in ("image", "reason")) for n in (
    "cluster", "namespace", "workload_name", "container", "image", "reason", "detail"))
TIME_KEYS = ("last_pushed_at", "pushed_at", "last_seen", "last_reported_at", "synced_at", "scanned_at", "since",
             "received_at", "last_sync", "last_report", "last_scan")


def _timed(rows: Sequence[BaseModel]) -> List[Dict[str, Any]]:
    """The answer's rows (its typed models) as columns, every time with its UTC offset."""
    return [{k: utc_iso(v) if k in TIME_KEYS or k.endswith("_at") else v for k, v in row.model_dump().items()}
            for row in rows]


def _push_params(params: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in params.items() if k in ("registry", "page", "page_size")}


def _untraced_pushes(answer: Dict[str, Any], wide: bool) -> None:
    page = UntracedPage.model_validate(answer)
    rows = _timed(page.pushes)
    for row in rows:
        row["digest"] = row["digest"] if wide else short_digest(row.get("digest"))
    print("\nuntraced pushes (a registry reported them; no collector report, label or provenance explains them):")
    print(table(rows, PUSH_COLUMNS, wide=wide) if rows else "none")
    print(f"page {page.page}: {len(rows)} of {page.total} untraced pushes")
    for title, counts in (("per registry", page.by_registry), ("per actor", page.by_actor)):
        if counts:
            print(f"{title}: " + ", ".join(f"{c.name or '(anonymous)'} {c.pushes}" for c in counts))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    client = ApiClient(url=args.url)
    try:
        params = filter_params(args)
        if args.coverage:
            answer = client.get("/v1/coverage")
            if args.format == "json":
                print(json.dumps(answer, indent=2))
                return 0
            summary = CoverageSummary.model_validate(answer)
            sections = ("clusters", "registries", "projects", "scanners")
            if args.format == "csv":  # one sheet: a section column, then every section's columns
                rows = [{"section": section, **row} for section in sections
                        for row in _timed(getattr(summary, section))]
                names = list(dict.fromkeys(name for row in rows for name in row)) or ["section"]
                emit(args, answer, rows, [Column(name) for name in names])
                return 0
            for section in sections:
                rows = _timed(getattr(summary, section))
                print(f"{section}:")
                print(table(rows, [Column(n, required=i == 0) for i, n in enumerate(rows[0])], wide=args.wide)
                      if rows else "  none")
            return 0
        if args.by_pipeline:
            answer = client.get("/v1/query/pipelines", params={**params, "days": args.days})
            report = PipelineReport.model_validate(answer)
            rows = _timed(report.pipelines)
            footer = f"{len(rows)} pipelines pushed images with {report.min_severity}+ findings"
            emit(args, answer, rows, PIPELINE_COLUMNS, f"{footer} since {utc_iso(report.since)}")
            return 0
        params.update(page=args.page, page_size=args.page_size)
        if args.gaps:
            answer = client.get("/v1/coverage/gaps", params=params)
            push_params = {k: v for k, v in params.items() if k in ("registry", "page", "page_size")}
            pushes = client.get("/v1/coverage/untraced-pushes", params=push_params)
            if args.format == "json":
                print(json.dumps({**answer, "untraced_pushes": pushes}, indent=2))
                return 0
            gaps = GapPage.model_validate(answer)
            rows = _timed(gaps.gaps)
            emit(args, answer, rows, GAP_COLUMNS,
                 f"page {gaps.page}: {len(rows)} of {gaps.total} untraced containers",
                 header=list(rows[0]) if rows else None)
            if args.format == "table":
                _untraced_pushes(pushes, args.wide)
            return 0
        params["sort"] = args.sort
        answer = client.get("/v1/query", params=params)
    except FilterError as exc:
        print(f"imagetrail query: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"imagetrail query: {exc}", file=sys.stderr)
        return 1
    page = ExplorerPage.model_validate(answer)
    rows = explorer_rows(page, wide=args.wide, csv=args.format == "csv")
    footer = f"page {page.page}: {len(rows)} of {page.total} rows (sorted by {page.sort})"
    if page.hidden_by_permissions:
        footer += "; rows in organisations your permissions hide match"
    emit(args, answer, rows, TABLE_COLUMNS, footer, header=EXPLORER_HEADER)
    return 0
