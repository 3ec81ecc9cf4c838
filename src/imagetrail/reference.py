"""The one image reference and digest grammar of ImageTrail (collector and server alike).

``[registry[:port]/]path[:tag][@sha256:<64 hex>]``, normalised the way Docker's
distribution/reference package does it (normalize.go: ParseNormalizedNamed and
splitDockerDomain; regexp.go for the component grammar,
https://github.com/distribution/reference):

* the first path component is a registry host when it contains "." or ":", is "localhost",
  or has upper-case letters (path components never do); otherwise the image is on Docker Hub;
* ``index.docker.io`` (and ``registry-1.docker.io``, the host Docker Hub really serves) is
  ``docker.io``, and a one-component Docker Hub name lives under ``library/``
  (``nginx`` is ``docker.io/library/nginx``);
* path components are lower case: ``myreg.io/Team/App`` is rejected, never lower-cased;
* a registry host is case-insensitive (DNS), so it is accepted in any case and lower-cased
  here (distribution keeps its case; ImageTrail stores one spelling per registry). A host
  recognised only by its capitals (``Registry/app``) then prints as ``registry/app``, which
  reads as a Docker Hub name: such a registry is best named with its port or domain;
* the name (registry/path) is at most 255 characters, a tag at most 128, and the only digest
  ImageTrail stores is sha256 in lower-case hex.

Standard library only: the collector imports this module on every job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255  # distribution's NameTotalLengthMax, registry included
SHORT_DIGEST_LENGTH = 12  # hex digits shown by `docker images` and by our pages

DIGEST_PATTERN = r"sha256:[a-f0-9]{64}"
DIGEST_RE = re.compile(rf"^{DIGEST_PATTERN}$")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PATH_PATTERN = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
PATH_RE = re.compile(rf"^{PATH_PATTERN}$")
TAG_PATTERN = r"[\w][\w.-]{0,127}"
TAG_RE = re.compile(rf"^{TAG_PATTERN}$", re.ASCII)
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
HOST_PATTERN = rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
HOST_RE = re.compile(rf"^{HOST_PATTERN}$")
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")


class InvalidReference(ValueError):
    """The text is not an image reference; the message names the part that is wrong."""


@dataclass(frozen=True)
class ImageReference:
    """A parsed reference: registry and repository normalised, tag and digest as written."""

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


def _quoted(text: str) -> str:
    return repr(text[:100] + ("..." if len(text) > 100 else ""))


def normalize_registry(host: str) -> str:
    """One spelling per registry: lower case, Docker Hub's aliases as docker.io."""
    host = host.strip().lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def names_registry(name: str) -> bool:
    """Whether ``name``'s first component is a registry host (a dot, a port, ``localhost`` or capitals)."""
    first, slash, _ = name.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost" or first.lower() != first)


def _split_registry(name: str) -> Tuple[str, str]:
    if names_registry(name):
        first, _, rest = name.partition("/")
        return first, rest
    return DOCKER_HUB, name


def parse_reference(text: str) -> ImageReference:
    """Parse ``[registry/]path[:tag][@digest]``; raise InvalidReference naming the wrong part."""
    if not isinstance(text, str) or not text:
        raise InvalidReference("the image reference is empty")
    if text != text.strip():
        raise InvalidReference(f"image reference {_quoted(text)} has spaces around it")
    if len(text) > 2 * MAX_NAME_LENGTH:
        raise InvalidReference(f"image reference {_quoted(text)} is {len(text)} characters; too long")
    if _IDENTIFIER_RE.match(text):
        raise InvalidReference(f"{_quoted(text)} is an image id, not a reference (write sha256:... for a digest)")
    remainder, at, digest = text.partition("@")
    if at and not DIGEST_RE.match(digest):
        raise InvalidReference(f"digest {_quoted(digest)} in {_quoted(text)} is not sha256:<64 lower-case hex>")
    tag = None
    slash, colon = remainder.rfind("/"), remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not TAG_RE.match(tag):
            raise InvalidReference(
                f"tag {_quoted(tag)} in {_quoted(text)} is not a tag (letters, digits, '_', '.', '-'; "
                "at most 128; not starting with '.' or '-')")
    host, path = _split_registry(remainder)
    if host != DOCKER_HUB and not HOST_RE.match(host):
        raise InvalidReference(f"registry {_quoted(host)} in {_quoted(text)} is not a host[:port]")
    registry = normalize_registry(host)
    if registry == DOCKER_HUB and "/" not in path:
        path = OFFICIAL_PREFIX + path
    if path.lower() != path:
        raise InvalidReference(f"repository {_quoted(path)} in {_quoted(text)} must be lower case")
    if not PATH_RE.match(path):
        raise InvalidReference(
            f"repository {_quoted(path)} in {_quoted(text)} is not a repository path "
            "(lower-case letters and digits separated by '/', '.', '_', '__' or '-')")
    if len(registry) + 1 + len(path) > MAX_NAME_LENGTH:
        raise InvalidReference(f"repository name in {_quoted(text)} is longer than {MAX_NAME_LENGTH} characters")
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest or None)


def registry_and_repository(text: str) -> Tuple[str, str]:
    """(registry, repository) of text ImageTrail did not validate (a pod's image, an old push):
    the parsed parts, or ("", the text) when it is not a reference, so a bad name is kept, not lost."""
    try:
        parsed = parse_reference(text)
    except InvalidReference:
        return "", text
    return parsed.registry, parsed.repository


def same_repository(a: str, b: str) -> bool:
    """Whether two references (familiar or qualified) name the same repository."""
    try:
        return parse_reference(a).name == parse_reference(b).name
    except InvalidReference:
        return False


def is_digest(value: Optional[str]) -> bool:
    """sha256:<64 lower-case hex>, the only digest form ImageTrail stores."""
    return isinstance(value, str) and DIGEST_RE.match(value) is not None


def short_digest(digest: str) -> str:
    """sha256:<first 12 hex>, the form `docker images` shows; other text is returned as it is."""
    return digest[: len("sha256:") + SHORT_DIGEST_LENGTH] if is_digest(digest) else digest


def running_digest(image_id: Optional[str], spec_image: str = "") -> Tuple[Optional[str], Optional[str]]:
    """(manifest digest, None) or (None, why it is unknown) from a containerStatuses[].imageID.

    Forms: ``docker-pullable://repo@sha256:...`` (dockershim), ``repo@sha256:...`` (containerd,
    CRI-O), ``sha256:...`` / ``docker://sha256:...`` (an image CONFIG id: the image was never pulled
    by digest, so it names no manifest). A spec image pinned by digest is used when the status is
    missing, because that is what the kubelet must run.
    """
    value = (image_id or "").strip()
    pinned = spec_image.rsplit("@", 1)[1] if "@" in spec_image else None
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
