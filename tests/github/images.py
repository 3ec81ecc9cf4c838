"""Build and push small real images, and read their digests back from the registry."""

from __future__ import annotations

import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, List, Optional

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def docker(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def build_image(context_dir: Path, reference: str, labels: Optional[Dict[str, str]] = None) -> str:
    """A one-file image FROM scratch (no pull needed); unique content, so a unique digest."""
    context_dir.mkdir(parents=True, exist_ok=True)
    (context_dir / "payload.txt").write_text(uuid.uuid4().hex, encoding="utf-8")
    lines = ["FROM scratch", "COPY payload.txt /payload.txt"]
    lines += [f'LABEL {key}="{value}"' for key, value in (labels or {}).items()]
    (context_dir / "Dockerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
    docker("build", "-q", "-t", reference, str(context_dir))
    return reference


def push(*references: str) -> None:
    for reference in references:
        docker("push", reference)


def registry_digest(registry: str, repository: str, tag: str) -> str:
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": MANIFEST_TYPES})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Docker-Content-Digest"]


def remove_images(references: List[str]) -> None:
    subprocess.run(["docker", "rmi", "-f", *references], capture_output=True, timeout=60)
