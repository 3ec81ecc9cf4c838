"""Image references and the digest forms Kubernetes reports.

Docker's reference grammar (distribution/reference): the first path component is a registry
host when it contains a "." or ":" or is "localhost"; otherwise the image is on Docker Hub,
whose one-component names live under "library/".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class ImageName:
    registry: str
    repository: str
    tag: Optional[str]
    digest: Optional[str]


def normalize_registry(host: str) -> str:
    host = host.strip().lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def parse_reference(reference: str) -> ImageName:
    """Split ``[registry/]repository[:tag][@digest]``; Docker Hub names are made explicit."""
    rest, _, digest = reference.strip().partition("@")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = normalize_registry(first), remainder
    else:
        registry, path = DOCKER_HUB, rest
    repository, tag = path, None
    name_end = path.rfind("/")
    colon = path.rfind(":")
    if colon > name_end:
        repository, tag = path[:colon], path[colon + 1 :]
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return ImageName(registry, repository.lower(), tag or None, digest or None)


def is_digest(value: Optional[str]) -> bool:
    return bool(value) and DIGEST_RE.match(value or "") is not None


def running_digest(image_id: Optional[str], spec_image: str = "") -> Tuple[Optional[str], Optional[str]]:
    """(manifest digest, None) or (None, why it is unknown) from a containerStatuses[].imageID.

    Forms: ``docker-pullable://repo@sha256:...`` (dockershim), ``repo@sha256:...`` (containerd,
    CRI-O), ``sha256:...`` / ``docker://sha256:...`` (an image CONFIG id: the image was never pulled
    by digest, so it names no manifest). A spec image pinned by digest is used when the status is
    missing, because that is what the kubelet must run.
    """
    value = (image_id or "").strip()
    pinned = parse_reference(spec_image).digest if "@" in spec_image else None
    if not value:
        if is_digest(pinned):
            return pinned, None
        return (
            None,
            "no imageID in the container status "
            "(the pod has no status yet, or the container has not started)",
        )
    for prefix in ("docker-pullable://", "docker://", "containerd://", "cri-o://"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    if "@" in value:
        digest = value.rsplit("@", 1)[1].lower()
        if is_digest(digest):
            return digest, None
        return None, f"imageID {image_id!r} carries a digest that is not sha256:<64 hex>"
    if is_digest(value.lower()):
        if is_digest(pinned):
            return pinned, None
        return None, (
            f"imageID {image_id!r} is an image config id, not a manifest digest "
            "(image built or loaded on the node, never pulled by digest)"
        )
    return None, f"unrecognised imageID form {image_id!r}"
