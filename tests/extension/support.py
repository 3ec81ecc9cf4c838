"""Helpers of the extension tests: repository paths, decorator YAML, building and unzipping the .vsix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import yaml

from tests.support import services

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "extension"
DECORATORS = [REPO_ROOT / "decorators" / "pre-job.yml", REPO_ROOT / "decorators" / "post-job.yml"]
# One task for both phases (the .vsix carries the collector once); each decorator step names its phase in the
# task's imagetrailPhase input, and each decorator's guard looks for that phase only.
TASK_NAME = "ImageTrailCollector"
PHASES = ["pre-job", "post-job"]
PHASE_INPUT = "imagetrailPhase"
SHARED_TASK_FILES = REPO_ROOT / "tasks" / "shared"  # copied into the task folder by package_tools


def load_json(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def phase_of(decorator: Path) -> str:
    return decorator.stem  # decorators/pre-job.yml -> pre-job


def task_dir(phase: str = "") -> Path:
    """The task folder; every phase runs the same task (``phase`` documents the caller's intent)."""
    return REPO_ROOT / "tasks" / TASK_NAME


def task_in_vsix(phase: str = "") -> str:
    return f"tasks/{TASK_NAME}"


def task_json(phase: str = "") -> Dict[str, Any]:
    return load_json(task_dir(phase) / "task.json")


def decorator_steps(text: str) -> List[Dict[str, Any]]:
    """The steps of a decorator template as the service would inject them when every
    `${{ if }}` holds: each conditional-insertion item is replaced by the steps under it."""
    document = yaml.safe_load(text)
    steps: List[Dict[str, Any]] = []
    for item in document["steps"]:
        keys = list(item)
        if len(keys) == 1 and keys[0].startswith("${{") and keys[0].endswith("}}"):
            steps.extend(item[keys[0]])
        else:
            steps.append(item)
    return steps


def insertion_conditions(text: str) -> List[str]:
    return [key for item in yaml.safe_load(text)["steps"] for key in item if key.startswith("${{")]


def require_tool(name: str) -> str:
    # Tools pip installs (vermin) live in the venv's bin/, which the test command never activates.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    path = shutil.which(name, path=search)
    if path is None:
        message = f"{name} is not installed (scripts/start-services.sh installs it)"
        if services.in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def build_vsix(output_dir: Path, *args: str, repo_root: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """`python -m package_tools build ...` as a user runs it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "package_tools", "build", "--output-dir", str(output_dir), *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def built_vsix(output_dir: Path, *args: str) -> Path:
    require_tool("tfx")
    result = build_vsix(output_dir, *args)
    assert result.returncode == 0, result.stderr + result.stdout
    vsix = Path(result.stdout.strip().splitlines()[-1])
    assert vsix.is_file() and vsix.parent == output_dir.resolve()
    return vsix


def unzip(vsix: Path, destination: Path) -> Path:
    with zipfile.ZipFile(vsix) as archive:
        archive.extractall(destination)
    return destination


def node() -> str:
    return require_tool("node")


def minimal_path_dir(directory: Path, *tools: str) -> Path:
    """A PATH directory holding only links to the named tools (those that exist here)."""
    directory.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        found = shutil.which(tool)
        if found:
            (directory / tool).symlink_to(found)
    return directory


def old_interpreter(version: str) -> Optional[str]:
    """A real interpreter of an old Python (e.g. '3.8', '2.7') if this machine has one (pyenv or PATH)."""
    candidate = shutil.which(f"python{version}")
    if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
        return candidate
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        versions = Path(root, "versions")
        for folder in sorted(versions.glob(f"{version}.*"), reverse=True) if versions.is_dir() else []:
            binary = folder / "bin" / f"python{version}"
            if binary.is_file() and os.access(binary, os.X_OK):
                return str(binary)
    return None


def old_python_stand_in(file: Path, version: Tuple[int, int, int]) -> Path:
    """An interpreter that runs this machine's Python but reports an old version to the code it runs
    (for machines without a real old Python). It takes the shim's flags and `-c CODE ARGS`."""
    real = os.path.realpath(sys.executable)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(
        "#!/bin/sh\n"
        "# Stands in for an old Python: same interpreter, older sys.version_info.\n"
        'while [ "$1" != "-c" ] && [ $# -gt 0 ]; do shift; done\n'
        'if [ "$1" = "-c" ]; then code="$2"; shift 2; else exit 2; fi\n'
        f'exec "{real}" -c "import sys; sys.version_info = {version + ("final", 0)!r}\n$code" "$@"\n',
        encoding="utf-8",
    )
    file.chmod(0o755)
    return file


def setup_python_layout(tool_cache: Path, on_start: Optional[Path] = None) -> Path:
    """actions/setup-python's layout for Python 3.8 on Linux: <tool cache>/Python/3.8.18/x64 with
    bin/python3.8 and the python3 / python links to it, plus lib/python3.8. bin/python3.8 is this machine's
    real 3.8 when it has one, else a stand-in that reports 3.8. With `on_start`, each start of it is noted
    there. Returns the bin folder (what setup-python puts first on PATH)."""
    prefix = tool_cache / "Python" / "3.8.18" / "x64"
    bin_dir = prefix / "bin"
    (prefix / "lib" / "python3.8").mkdir(parents=True)
    real = old_interpreter("3.8")
    target = Path(real) if real else old_python_stand_in(prefix / "stand-in" / "python", (3, 8, 18))
    bin_dir.mkdir(parents=True)
    launcher = bin_dir / "python3.8"
    notes = f'echo started >> "{on_start}"\n' if on_start else ""
    launcher.write_text(f'#!/bin/sh\n{notes}exec "{target}" "$@"\n', encoding="utf-8")
    launcher.chmod(0o755)
    for name in ("python3", "python"):
        (bin_dir / name).symlink_to("python3.8")
    return bin_dir
