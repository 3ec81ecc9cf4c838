"""Docker image references: ``[registry[:port]/]path[:tag][@sha256:hex]``.

Follows the normalisation of Docker's distribution/reference package: the first path
component is a registry only if it contains '.' or ':', is 'localhost', or has upper-case
letters; otherwise the registry is docker.io, and a one-component docker.io name lives
under 'library/' (``alpine`` is ``docker.io/library/alpine``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

DEFAULT_REGISTRY = "docker.io"
LEGACY_REGISTRIES = ("index.docker.io", "registry-1.docker.io")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_PATH_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


class InvalidReference(ValueError):
    pass


@dataclass(frozen=True)
class ImageReference:
    registry: str
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    @property
    def name(self) -> str:
        """Fully qualified repository name, e.g. docker.io/library/alpine."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text


def parse_reference(text: str) -> ImageReference:
    if not text or len(text) > 1024 or text != text.strip():
        raise InvalidReference(f"not an image reference: {text[:100]!r}")
    remainder, digest = text, None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise InvalidReference(f"unsupported digest in {text[:100]!r}")
    tag = None
    slash, colon = remainder.rfind("/"), remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidReference(f"invalid tag in {text[:100]!r}")
    first, sep, rest = remainder.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        registry, path = first, rest
    else:
        registry, path = DEFAULT_REGISTRY, remainder
    if registry in LEGACY_REGISTRIES:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = "library/" + path
    if not _PATH_RE.match(path):
        raise InvalidReference(f"invalid repository name in {text[:100]!r}")
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest)


def same_repository(a: str, b: str) -> bool:
    """Whether two references (familiar or qualified) name the same repository."""
    try:
        return parse_reference(a).name == parse_reference(b).name
    except InvalidReference:
        return False
