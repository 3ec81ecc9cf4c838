"""The installable package carries everything `imagetrail serve` needs outside Python modules.

The README's first command installs the project with pip and runs `imagetrail serve`; a file left out of the wheel
(a migration, a template, the report schema) would only show on a fresh machine, so the wheel is built and read here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "imagetrail"


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True, timeout=300,
    )
    (wheel,) = out.glob("imagetrail-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _data_files() -> list:
    """Every non-Python file under the package source, plus the Alembic revisions."""
    wanted = []
    for path in PACKAGE.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        if path.suffix != ".py" or "migrations" in path.parts:
            wanted.append(path.relative_to(PACKAGE.parent).as_posix())
    return wanted


def test_wheel_contains_every_migration_template_asset_and_schema(wheel_names):
    expected = _data_files()
    assert any(name.endswith("report-v1.schema.json") for name in expected)
    assert any("/versions/" in name for name in expected)
    missing = [name for name in expected if name not in wheel_names]
    assert missing == [], f"left out of the wheel: {missing}; add them to [tool.setuptools.package-data]"


def test_readme_starts_with_the_run_and_test_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert first_block, "README.md must open with a command block"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands[0].endswith("imagetrail serve"), commands[0]
    assert commands[1] == "bash scripts/test.sh"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/test.sh" in ci, ".ci/run must call the README's test command"
