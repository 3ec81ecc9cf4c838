"""A local Debian base image for building the ImageTrail container image without Docker Hub.

CI machines reach Debian and PyPI but not Docker Hub, so the Dockerfile's ``BASE_IMAGE`` build
argument is pointed at an image made here: ``debootstrap --variant=minbase`` of the Debian
release and mirror this machine's apt sources name, imported with ``docker import``. It is
built once per machine and found again by its tag. Where pip is configured with its own CA
bundle (a TLS-inspecting proxy), that bundle is copied into the image at the same path, and
``pip_build_args`` passes it as ``PIP_CERT``.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

BASE_TAG = "imagetrail-test-base:bookworm"
SUITE = "bookworm"
PACKAGES = "python3,python3-venv,ca-certificates"
APT_SOURCES = Path("/etc/apt")


def _apt_entries() -> List[Tuple[str, str]]:
    """(uri, suite) pairs from one-line ``deb`` sources and deb822 ``.sources`` files."""
    entries: List[Tuple[str, str]] = []
    files = [APT_SOURCES / "sources.list", *sorted((APT_SOURCES / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (key.strip().lower(), value.strip())
                    for key, _, value in (line.partition(":") for line in stanza.splitlines())
                    if not key.startswith("#") and value
                )
                if "deb" not in fields.get("types", "").split():
                    continue
                for uri in fields.get("uris", "").split():
                    entries += [(uri, suite) for suite in fields.get("suites", "").split()]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], words[2]))
    return entries


def debian_mirror() -> Optional[str]:
    """The configured mirror that carries the plain release suite (not -security, not -updates)."""
    for uri, suite in _apt_entries():
        if suite == SUITE and uri.startswith(("http://", "https://")):
            return uri
    return None


def _image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def ensure_base_image(state_dir: Path) -> str:
    """Build ``BASE_TAG`` unless the engine has it; returns the tag. Raises RuntimeError with the reason."""
    if _image_exists(BASE_TAG):
        return BASE_TAG
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise RuntimeError("debootstrap is not installed; run scripts/start-services.sh as root")
    mirror = debian_mirror()
    if mirror is None:
        raise RuntimeError(f"no apt source for Debian {SUITE} in {APT_SOURCES}")
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "base-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building it right now
        if _image_exists(BASE_TAG):
            return BASE_TAG
        with tempfile.TemporaryDirectory(prefix="imagetrail-base-", dir=state_dir) as root:
            subprocess.run(
                [debootstrap, "--variant=minbase", f"--include={PACKAGES}", SUITE, root, mirror],
                check=True, capture_output=True, timeout=1800,
            )
            shutil.rmtree(Path(root) / "var/cache/apt/archives", ignore_errors=True)
            Path(root).chmod(0o755)  # the temporary directory is 0700: "/" of the image would be too
            cert = pip_settings().get("cert")
            if cert and Path(cert).is_file():
                target = Path(root) / cert.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cert, target)
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(["docker", "import", "-", BASE_TAG], stdin=tar.stdout, check=True,
                           capture_output=True, timeout=900)
            tar.wait()
    return BASE_TAG


def pip_settings() -> Dict[str, str]:
    """This machine's pip settings: ``pip config list``, then PIP_* variables over them."""
    import os
    import sys

    found: Dict[str, str] = {}
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1].strip()
        found[name] = value.strip().strip("'\"")
    for name in ("index-url", "extra-index-url", "trusted-host", "cert"):
        env = os.environ.get("PIP_" + name.upper().replace("-", "_"))
        if env:
            found[name] = env
    return found


def pip_build_args() -> Dict[str, str]:
    """pip's index and certificate settings as build arguments.

    Only http(s) indexes can be used inside the build; local file indexes are left out.
    """
    found = pip_settings()
    args: Dict[str, str] = {}
    for name in ("index-url", "extra-index-url"):
        urls = [u for u in found.get(name, "").split() if u.startswith(("http://", "https://"))]
        if urls:
            args["PIP_" + name.upper().replace("-", "_")] = " ".join(urls)
    if found.get("trusted-host"):
        args["PIP_TRUSTED_HOST"] = found["trusted-host"]
    if found.get("cert"):
        args["PIP_CERT"] = found["cert"]
    return args
