"""Vendored wheels (pinned, hashed, pure, importable from zip) and what the collector needs on Python 3.9."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Set

import pytest

from package_tools import build, vendor
from package_tools.errors import BuildError
from tests.extension.support import REPO_ROOT, old_interpreter, require_tool

COLLECTOR_FILES = [REPO_ROOT / "src" / "imagetrail" / name for name in build.COLLECTOR_SOURCES]
# Third-party modules the collector may import only lazily, warning when they are missing (never vendored:
# cryptography is compiled per platform; PyJWT needs it; msal only for certificate credentials).
OPTIONAL_MODULES = {"jwt", "cryptography"}


def python_sources() -> list:
    files = []
    for entry in COLLECTOR_FILES:
        files.extend(
            sorted(entry.rglob("*.py")) if entry.is_dir() else [entry] if entry.suffix == ".py" else []
        )
    return files


def imported_modules(path: Path) -> Set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_file(src: Path, parts: list):
    """The file that defines the longest importable prefix of `parts` (a name imported from a module
    is an attribute, not a file)."""
    for end in range(len(parts), 0, -1):
        for candidate in (
            src.joinpath(*parts[:end]).with_suffix(".py"),
            src.joinpath(*parts[:end], "__init__.py"),
        ):
            if candidate.is_file():
                return candidate
    return None


def test_committed_wheels_match_the_pinned_hashes_and_are_pure():
    wheels = vendor.check_vendor_dir()
    assert set(wheels) == {pin.normalized for pin in vendor.read_pins()}
    for wheel in wheels.values():
        assert wheel.name.endswith(("-py3-none-any.whl", "-py2.py3-none-any.whl"))


def test_every_pin_has_a_sha256_hash():
    text = vendor.REQUIREMENTS.read_text(encoding="utf-8")
    pins = vendor.read_pins()
    assert pins and all(len(h) == 64 for pin in pins for h in pin.sha256)
    assert text.count("--hash=sha256:") == len(pins)
    assert "cryptography" not in {pin.normalized for pin in pins}


def test_a_tampered_wheel_is_refused(tmp_path):
    shutil.copytree(vendor.VENDOR_DIR, tmp_path / "vendor")
    victim = sorted((tmp_path / "vendor").glob("requests-*.whl"))[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(
        BuildError, match=rf"vendor/{victim.name} does not match the hash pinned for requests"
    ):
        vendor.check_vendor_dir(tmp_path / "vendor")


def test_an_unpinned_or_impure_wheel_is_refused(tmp_path):
    (tmp_path / "vendor").mkdir()
    for wheel in vendor.VENDOR_DIR.glob("*.whl"):
        shutil.copy2(wheel, tmp_path / "vendor")
    (tmp_path / "vendor" / "cryptography-46.0.0-cp311-abi3-manylinux_2_34_x86_64.whl").write_bytes(b"PK")
    with pytest.raises(
        BuildError, match="cryptography-46.0.0-cp311-abi3-manylinux_2_34_x86_64.whl is not pinned"
    ):
        vendor.check_vendor_dir(tmp_path / "vendor")
    assert not vendor.wheel_is_pure("cryptography-46.0.0-cp311-abi3-manylinux_2_34_x86_64.whl")
    assert vendor.wheel_is_pure("six-1.17.0-py2.py3-none-any.whl")


def test_a_malformed_requirements_line_names_the_file(tmp_path):
    bad = tmp_path / "requirements-collector.txt"
    bad.write_text("requests>=2.31\n", encoding="utf-8")
    with pytest.raises(
        BuildError, match=r"requirements-collector.txt: entry 'requests>=2.31' must be 'name==version"
    ):
        vendor.read_pins(bad)


def _import_from_wheels(python: str) -> subprocess.CompletedProcess:
    wheels = [str(path) for path in sorted(vendor.VENDOR_DIR.glob("*.whl"))]
    code = (
        "import sys\n"
        f"sys.path[:0] = {wheels!r}\n"
        "import docker, requests, urllib3, idna, certifi, charset_normalizer, msal\n"
        "for module in (docker, requests, urllib3, idna, certifi, charset_normalizer, msal):\n"
        "    assert '.whl' in module.__file__, module.__file__\n"
        "import os\n"
        "assert os.path.isfile(certifi.where())\n"  # certifi's CA bundle is extracted from the zip
        "print('ok', requests.__version__)\n"
    )
    return subprocess.run([python, "-S", "-c", code], capture_output=True, text=True, timeout=120)


def test_wheels_import_from_zip_files():
    result = _import_from_wheels(sys.executable)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr


def test_wheels_import_from_zip_files_on_python_3_9():
    python39 = old_interpreter("3.9")
    if python39 is None:
        pytest.skip("no Python 3.9 interpreter on this machine (pyenv or python3.9 on PATH)")
    result = _import_from_wheels(python39)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr


def test_collector_sources_run_on_python_3_9_per_vermin():
    vermin = require_tool("vermin")
    sources = [str(path.relative_to(REPO_ROOT)) for path in python_sources()]
    result = subprocess.run(
        [vermin, "-t=3.9-", "--no-tips", "--violations", "--eval-annotations", *sources],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_collector_imports_are_packaged_or_vendored():
    """Every module the collector imports is the standard library, part of the packaged sources,
    provided by a vendored wheel, or an optional dependency it imports lazily."""
    vendored = {vendor.wheel_project(wheel.name) for wheel in vendor.VENDOR_DIR.glob("*.whl")}
    provided = vendored
    packaged = REPO_ROOT / "src"
    subset = set(build.COLLECTOR_SOURCES)
    missing = []
    for source in python_sources():
        for name in imported_modules(source):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__" or top in OPTIONAL_MODULES:
                continue
            if top == "imagetrail":
                module_file = _module_file(packaged, name.split("."))
                if (
                    module_file is None
                    or module_file.relative_to(packaged / "imagetrail").parts[0] not in subset
                ):
                    missing.append(f"{source.relative_to(REPO_ROOT)} imports {name}")
                continue
            if vendor.normalize(top) not in provided:
                missing.append(f"{source.relative_to(REPO_ROOT)} imports {name}")
    assert not missing, "\n".join(missing)
