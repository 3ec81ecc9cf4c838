"""`python -m package_tools vendor | build`."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from package_tools.errors import BuildError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m package_tools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("vendor", help="download the pinned pure-Python wheels into vendor/")
    build = commands.add_parser("build", help="package the Azure DevOps extension (.vsix) into dist/")
    build.add_argument("--backend-url", default="", help="ImageTrail backend URL baked into the tasks")
    build.add_argument("--audience", default="", help="token audience baked into the tasks")
    build.add_argument("--entra-authority-host", default="",
                       help="Microsoft Entra authority host baked into the tasks (sovereign clouds; "
                            "default https://login.microsoftonline.com)")
    build.add_argument("--publisher", default=None, help="Marketplace publisher id (default: the manifest's)")
    build.add_argument(
        "--version", default=None, help="extension and task version X.Y.Z (default: the manifest's)"
    )
    build.add_argument("--output-dir", default=None, help="where the .vsix goes (default: dist/)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "vendor":
            from package_tools import vendor

            for wheel in vendor.download():
                print(f"vendor/{wheel.name}")
            return 0
        from pathlib import Path

        from package_tools import build

        options = build.BuildOptions.from_args(
            backend_url=args.backend_url,
            audience=args.audience,
            entra_authority_host=args.entra_authority_host,
            publisher=args.publisher,
            version=args.version,
            output_dir=Path(args.output_dir) if args.output_dir else None,
        )
        print(build.build(options))
        return 0
    except BuildError as err:
        print(f"package_tools: error: {err}", file=sys.stderr)
        return 1
