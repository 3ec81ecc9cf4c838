"""``imagetrail scans ingest FILE...``: upload Trivy / Grype JSON reports; the backend parses them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.client.output import Column, add_output_arguments, emit
from imagetrail.views.writes import ScanAnswer

COLUMNS = tuple(Column(n, required=n in ("file", "images")) for n in (
    "file", "format", "images", "findings", "superseded", "scanner"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagetrail scans", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    ingest = sub.add_parser("ingest", help="upload reports (trivy image/k8s --format json, grype -o json)")
    ingest.add_argument("files", nargs="+", metavar="FILE")
    add_output_arguments(ingest)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    client = ApiClient(url=args.url, timeout=300)
    failed, answers, rows = 0, [], []
    for name in args.files:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"{name}: cannot read ({exc.strerror})", file=sys.stderr)
            failed += 1
            continue
        try:
            answer = client.request(
                "POST",
                "/v1/scans",
                params={"file_name": path.name},
                data=data,
                headers={"Content-Type": "application/json"},
            )
        except ApiError as exc:
            print(f"{name}: not ingested: {exc}", file=sys.stderr)
            failed += 1
            continue
        scan = ScanAnswer.model_validate(answer)
        findings = sum(image.findings for image in scan.images)
        superseded = sum(1 for image in scan.images if not image.latest)
        note = f"; {superseded} older than a scan already stored (kept as history)" if superseded else ""
        if args.format == "table":
            print(f"{name}: {scan.format} report, {len(scan.images)} image(s), {findings} findings{note}")
        answers.append(answer)
        rows.append({"file": name, "format": scan.format, "images": len(scan.images),
                     "findings": findings, "superseded": superseded, "scanner": scan.scanner})
        for warning in scan.warnings:
            print(f"{name}: warning: {warning}", file=sys.stderr)
    if args.format != "table":
        emit(args, answers, rows, COLUMNS)
    return 1 if failed else 0
