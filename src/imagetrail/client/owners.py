"""``imagetrail owners resolve [filters]``: resolve and store the owners of the query's images, in order,
each with its source (CODEOWNERS rule, commit author, configured team, requester)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.client.output import Column, add_output_arguments, emit
from imagetrail.client.query import FilterError, add_filter_arguments, filter_body
from imagetrail.views.remediation import ResolveAnswer

COLUMNS = tuple(Column(n, required=n in ("run", "owner")) for n in (
    "run", "rank", "owner", "contact", "source", "evidence", "where", "pipeline", "detail"))


def owner_rows(answer: ResolveAnswer) -> List[Dict[str, Any]]:
    """One row per owner of each run, in order, then one "!" row per source that could not be read."""
    rows: List[Dict[str, Any]] = []
    for run in answer.runs:
        where = f"{run.organization}/{run.project}"
        for n, owner in enumerate(run.owners, 1):
            rows.append({"run": run.run_id, "rank": n, "where": where, "pipeline": run.pipeline or "",
                         "owner": owner.label, "contact": owner.email or owner.login or "",
                         "source": owner.source, "evidence": owner.evidence, "detail": owner.detail or ""})
        for problem in run.problems:
            rows.append({"run": run.run_id, "where": where, "owner": "!", "detail": problem})
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagetrail owners", description=__doc__)
    parser.add_argument("action", choices=("resolve",))
    add_filter_arguments(parser)
    parser.add_argument(
        "--max-runs", type=int, default=100, help="resolve at most this many runs (default 100)"
    )
    add_output_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        answer = ApiClient(url=args.url, timeout=600).post(
            "/v1/owners/resolve", json={"filters": filter_body(args), "max_runs": args.max_runs}
        )
    except FilterError as exc:
        print(f"imagetrail owners: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"imagetrail owners: {exc}", file=sys.stderr)
        return 1
    rows = owner_rows(ResolveAnswer.model_validate(answer))
    emit(args, answer, rows, COLUMNS, empty="no matching images with a pipeline run")
    return 0
