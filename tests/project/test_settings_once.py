"""One Settings, read once: only the entry points and settings.py look at the environment.

The backend's configuration is ``Settings.from_env()``, built by ``server.app.create_app`` and kept in
``app.state.settings``. A module that read ``os.environ`` while serving a request would see what no
startup check validated, and tests could not configure it through Settings.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[2] / "src" / "imagetrail"

# Where reading the environment is the point: the settings loader, the agent-side collector (its
# environment is the pipeline's), and the command-line entry points (server/cli*.py builds Settings
# from it before create_app; client/* are CLI commands).
ALLOWED = ("settings.py", "cli.py", "__main__.py", "collector/", "server/cli", "client/",
           # DOCKER_CONFIG only when no config file is given: the CLI's default. The backend always
           # passes settings.registry_auth_file (or os.devnull).
           "remote/oci_registry.py")


def environment_reads(source: str) -> List[int]:
    """Lines that touch ``os.environ`` / ``os.getenv`` / ``os.putenv`` (or ``environ`` imported from os)."""
    tree = ast.parse(source)
    from_os = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module == "os" for alias in node.names if alias.name in ("environ", "getenv")}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                and node.attr in ("environ", "getenv", "putenv", "environb"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id in from_os:
            lines.append(node.lineno)
    return sorted(set(lines))


def test_only_settings_and_entry_points_read_the_environment():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(ALLOWED):
            continue
        found += [f"{relative}:{line}" for line in environment_reads(path.read_text(encoding="utf-8"))]
    assert found == [], "read settings from app.state.settings (imagetrail.settings.Settings) instead"


def test_the_check_sees_every_way_of_reading_the_environment():
    assert environment_reads("import os\nx = os.environ.get('A')\ny = os.getenv('B')\n") == [2, 3]
    assert environment_reads("from os import environ as e\n\ndef f():\n    return e['A']\n") == [4]
    assert environment_reads("import os\nx = os.path.join('a')\n") == []
