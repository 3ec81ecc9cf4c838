"""Top-level command dispatch.

Each command group lives in its own module and is imported only when used: the
collector runs after every job of an organisation, so `imagetrail collect` must not
pay for importing the server, the database layer or the Kubernetes client.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

# command -> (module with `main(argv) -> int`, one-line help)
COMMANDS = {
    "collect": ("imagetrail.collector.cli", "collect pushed images in a CI job (pre-job / post-job)"),
    "serve": ("imagetrail.server.cli", "run the ImageTrail backend (API and web explorer)"),
    "demo": ("imagetrail.server.cli_demo", "load a sample map into a fresh database and serve it"),
    "db": ("imagetrail.server.cli_db", "database migrations (upgrade, current)"),
    "keys": ("imagetrail.server.cli_keys", "create, list and revoke API keys"),
    "trace": ("imagetrail.client.trace", "trace a digest or image reference to its pipeline run and owner"),
    "images": ("imagetrail.client.images", "list images by repository, pipeline or run"),
    "reconcile": ("imagetrail.client.reconcile", "ingest reports kept with Azure DevOps runs when the backend was down"),
    "k8s": ("imagetrail.client.k8s", "sync running Kubernetes workloads and their exposure"),
    "scans": ("imagetrail.client.scans", "ingest Trivy / Grype vulnerability reports"),
    "query": ("imagetrail.client.query", "explorer query: exposed, vulnerable images and their owners"),
    "remediate": ("imagetrail.client.remediate", "open work items / GitHub issues for query results"),
    "owners": ("imagetrail.client.owners", "resolve image owners: CODEOWNERS, commit author, team, requester"),
    "registry": ("imagetrail.client.registry", "resolve index -> platform manifests; sync pushes from a registry"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: imagetrail COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'imagetrail COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        from imagetrail import __version__

        print(f"imagetrail {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"imagetrail: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(command[0])
        return int(module.main(args[1:]) or 0)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in ("imagetrail", ""):
            raise  # a bug in ImageTrail itself, not a missing extra
        print(_missing_extra(args[0], exc.name), file=sys.stderr)
        return 2


def _missing_extra(command: str, module: str) -> str:
    # The collector needs only the base install; every other command may need the server extra.
    return (
        f"imagetrail {command}: the Python module {module!r} is not installed. Install the server "
        "extra: pip install 'imagetrail[server]' (from a clone: pip install '.[server]')"
    )


if __name__ == "__main__":
    raise SystemExit(main())
