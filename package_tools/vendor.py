"""Download the collector's pinned, pure-Python wheels into vendor/.

The Azure DevOps task and the GitHub Action put each wheel on PYTHONPATH as it is (pure
wheels import from zip files), so agents need nothing installed beyond Python itself.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from package_tools.errors import BuildError

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path(__file__).resolve().parent / "requirements-collector.txt"
VENDOR_DIR = REPO_ROOT / "vendor"
OLDEST_PYTHON = "3.9"
PURE_TAGS = ("py3-none-any", "py2.py3-none-any")

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    sha256: List[str]

    @property
    def normalized(self) -> str:
        return normalize(self.name)


def normalize(name: str) -> str:
    """Project name as wheel file names spell it (PEP 503 normalisation, '-' as '_')."""
    return re.sub(r"[-_.]+", "_", name).lower()


def read_pins(path: Path = REQUIREMENTS) -> List[Pin]:
    """Parse `name==version --hash=sha256:...` entries (continuation lines joined)."""
    text = path.read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    pins: List[Pin] = []
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        hashes = _HASH.findall(line)
        if not match or not hashes:
            raise BuildError(f"{path.name}: entry {line!r} must be 'name==version --hash=sha256:<64 hex>'")
        pins.append(Pin(match.group(1), match.group(2), hashes))
    return pins


def wheel_is_pure(filename: str) -> bool:
    return filename.endswith(".whl") and any(
        filename[: -len(".whl")].endswith("-" + tag) for tag in PURE_TAGS
    )


def wheel_project(filename: str) -> str:
    return normalize(filename.split("-", 1)[0])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def check_vendor_dir(vendor_dir: Path = VENDOR_DIR, requirements: Path = REQUIREMENTS) -> Dict[str, Path]:
    """Every pin has exactly one pure wheel in vendor_dir whose hash is pinned, and nothing else is there."""
    pins = {pin.normalized: pin for pin in read_pins(requirements)}
    wheels = sorted(vendor_dir.glob("*.whl")) if vendor_dir.is_dir() else []
    found: Dict[str, Path] = {}
    for wheel in wheels:
        project = wheel_project(wheel.name)
        pin = pins.get(project)
        if pin is None:
            raise BuildError(
                f"vendor/{wheel.name} is not pinned in {requirements.name}; run 'python -m package_tools vendor'"
            )
        if not wheel_is_pure(wheel.name):
            raise BuildError(f"vendor/{wheel.name} is not a pure-Python wheel ({' or '.join(PURE_TAGS)})")
        if sha256_of(wheel) not in pin.sha256:
            raise BuildError(
                f"vendor/{wheel.name} does not match the hash pinned for {pin.name} in {requirements.name}"
            )
        if project in found:
            raise BuildError(
                f"vendor/ holds two wheels of {pin.name}: {found[project].name} and {wheel.name}"
            )
        found[project] = wheel
    missing = sorted(pins[name].name for name in pins if name not in found)
    if missing:
        raise BuildError(f"vendor/ lacks {', '.join(missing)}; run 'python -m package_tools vendor'")
    return found


def download(requirements: Path = REQUIREMENTS, vendor_dir: Path = VENDOR_DIR) -> List[Path]:
    """Replace vendor_dir's wheels with the pinned ones (downloaded with hash checking)."""
    read_pins(requirements)  # clear error on a malformed file before pip runs
    with tempfile.TemporaryDirectory(prefix="imagetrail-vendor-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--platform",
            "any",
            "--python-version",
            OLDEST_PYTHON,
            "--implementation",
            "py",
            "--abi",
            "none",
            "--no-deps",
            "--require-hashes",
            "-r",
            str(requirements),
            "-d",
            tmp,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"pip download failed ({requirements.name}):\n{result.stderr.strip()}")
        downloaded = sorted(Path(tmp).glob("*.whl"))
        impure = [wheel.name for wheel in downloaded if not wheel_is_pure(wheel.name)]
        if impure:
            raise BuildError(
                f"not pure-Python wheels: {', '.join(impure)}; remove them from {requirements.name}"
            )
        vendor_dir.mkdir(parents=True, exist_ok=True)
        for old in vendor_dir.glob("*.whl"):
            old.unlink()
        placed = []
        for wheel in downloaded:
            placed.append(Path(shutil.copy2(wheel, vendor_dir / wheel.name)))
    check_vendor_dir(vendor_dir, requirements)
    return placed
