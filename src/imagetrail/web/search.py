"""What the search box was given: a digest, an image reference, a repository URL, a CVE...

``classify`` only looks at the text; ``imagetrail.web.lookup`` then asks the database
which of the possible readings exist, so an ambiguous text (``team/app`` may be an image
repository on Docker Hub or a workload ``namespace/name``) becomes a disambiguation list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional

from imagetrail.reference import DIGEST_PATTERN, HOST_PATTERN, PATH_PATTERN, SHORT_DIGEST_LENGTH, TAG_PATTERN

MIN_DIGEST_PREFIX = SHORT_DIGEST_LENGTH  # a short digest as printed (imagetrail.reference)

_HEX = re.compile(r"^[0-9a-f]+$")
_CVE = re.compile(r"^(CVE-\d{4}-\d{4,}|GHSA(-[23456789cfghjmpqrvwx]{4}){3})$", re.IGNORECASE)
_REPO_URL = re.compile(r"^(https?://|ssh://|git@)|/_git/|\.git$", re.IGNORECASE)
# Kubernetes namespace and object names (RFC 1123 labels / subdomains).
_K8S_NAME = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_WORKLOAD = re.compile(rf"^{_K8S_NAME}/{_K8S_NAME}(\.{_K8S_NAME})*$")
# An image reference: optional registry host, path components, optional :tag and/or @digest.
_IMAGE_REF = re.compile(
    rf"^(?P<name>(?:{HOST_PATTERN}/)?{PATH_PATTERN})(:(?P<tag>{TAG_PATTERN}))?(@(?P<digest>{DIGEST_PATTERN}))?$",
    re.ASCII,
)


class Kind(str, Enum):
    DIGEST = "digest"
    DIGEST_PREFIX = "digest-prefix"
    CVE = "cve"
    REPOSITORY_URL = "repository-url"
    IMAGE_REFERENCE = "image-reference"
    WORKLOAD = "workload"
    PIPELINE = "pipeline"


@dataclass(frozen=True)
class Reading:
    """One way to read the search text."""

    kind: Kind
    value: str


def _digest_reading(text: str) -> Optional[Reading]:
    lowered = text.lower()
    hex_part = lowered[len("sha256:") :] if lowered.startswith("sha256:") else lowered
    if not _HEX.match(hex_part):
        return None
    if len(hex_part) == 64:
        return Reading(Kind.DIGEST, "sha256:" + hex_part)
    if MIN_DIGEST_PREFIX <= len(hex_part) < 64:
        return Reading(Kind.DIGEST_PREFIX, "sha256:" + hex_part)
    return None


def has_registry_host(reference: str) -> bool:
    """Docker's rule: the first component names a registry when it has a dot or port, or is localhost."""
    first, _, rest = reference.partition("/")
    return bool(rest) and ("." in first or ":" in first or first == "localhost")


def classify(text: str) -> List[Reading]:
    """All plausible readings of ``text``, most specific first; empty when it is blank."""
    text = text.strip()
    if not text:
        return []
    digest = _digest_reading(text)
    if digest:
        return [digest]
    if _CVE.match(text):
        return [Reading(Kind.CVE, text.upper() if text.upper().startswith("CVE") else text)]
    if _REPO_URL.search(text):
        return [Reading(Kind.REPOSITORY_URL, text)]
    readings: List[Reading] = []
    image = _IMAGE_REF.match(text)
    explicit_image = bool(image and (image.group("tag") or image.group("digest") or has_registry_host(text)))
    if explicit_image:
        return [Reading(Kind.IMAGE_REFERENCE, text)]
    if _WORKLOAD.match(text):
        readings.append(Reading(Kind.WORKLOAD, text))
    if image:
        readings.append(Reading(Kind.IMAGE_REFERENCE, text))
    readings.append(Reading(Kind.PIPELINE, text))
    return readings
