"""``imagetrail registry resolve REF...``: record index -> platform manifest digests from the registry.
``imagetrail registry sync --registry HOST``: post a registry's pushes when it cannot notify (GHCR, Docker Hub)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from imagetrail.client.api import ApiClient, ApiError
from imagetrail.client.output import Column, add_output_arguments, emit
from imagetrail.views.writes import RelationsAnswer

COLUMNS = tuple(Column(n, required=n in ("reference", "manifest_digest")) for n in (
    "reference", "index_digest", "manifest_digest", "os", "architecture", "variant"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagetrail registry", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    resolve = sub.add_parser(
        "resolve", help="ask the registry for each reference's manifest (OCI Distribution API)"
    )
    resolve.add_argument("references", nargs="+", metavar="REF", help="e.g. myregistry.azurecr.io/app:1.4")
    resolve.add_argument("--dry-run", action="store_true", help="print the relations; do not send them")
    add_output_arguments(resolve)
    sync = sub.add_parser("sync", help="walk catalog -> tags -> manifests and post new or changed pushes "
                                       "(incremental, resumable; for registries without webhooks)")
    sync.add_argument("--registry", required=True, metavar="HOST", help="e.g. ghcr.io or myregistry.example:5000")
    sync.add_argument("--repository", metavar="R", help="only this repository (needed where the catalog is "
                                                        "not offered, e.g. GHCR and Docker Hub)")
    sync.add_argument("--state", metavar="FILE", help="where the sync remembers what it saw (default: "
                                                      "$XDG_STATE_HOME/imagetrail/registry-sync.json)")
    sync.add_argument("--insecure", action="store_true", help="plain HTTP to a non-loopback registry")
    sync.add_argument("--url", help="backend URL (default: IMAGETRAIL_URL)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.action == "sync":
        from imagetrail.client.registry_sync import run

        return run(args.registry, args.repository, args.state, args.insecure, url=args.url)
    from imagetrail.remote.oci_registry import RegistryClient, RegistryError

    registry = RegistryClient()
    relations, failed = [], 0
    for reference in args.references:
        try:
            resolved = registry.resolve(reference)
        except RegistryError as exc:
            print(f"imagetrail registry resolve: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not resolved.platforms:
            print(f"{reference}: {resolved.digest} is a single-platform manifest ({resolved.media_type})",
                  file=sys.stderr if args.format != "table" else sys.stdout)
            continue
        for platform in resolved.platforms:
            label = "/".join(p for p in (platform.os, platform.architecture, platform.variant) if p)
            if args.format == "table":
                print(f"{reference}: index {resolved.digest} -> {platform.digest} {label}")
            relations.append(
                {
                    "reference": reference,
                    "index_digest": resolved.digest,
                    "manifest_digest": platform.digest,
                    "os": platform.os,
                    "architecture": platform.architecture,
                    "variant": platform.variant,
                }
            )
    if args.format != "table":
        emit(args, relations, relations, COLUMNS)
    if relations and not args.dry_run:
        try:
            sent = [{k: v for k, v in r.items() if k != "reference"} for r in relations]
            answer = RelationsAnswer.model_validate(
                ApiClient(url=args.url).post("/v1/image-relations", json={"source": "registry", "relations": sent}))
        except ApiError as exc:
            print(f"imagetrail registry resolve: {exc}", file=sys.stderr)
            return 1
        print(f"recorded {answer.new} new of {answer.received} relations", file=sys.stderr
              if args.format != "table" else sys.stdout)
    return 1 if failed else 0
