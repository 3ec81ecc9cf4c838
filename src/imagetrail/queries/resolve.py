"""What a person types for an image, made exact: a short digest (a unique prefix of at least 12 hex digits,
``sha256:`` optional) becomes the digest; a reference without a registry (``payments/api``) becomes the one
registry's reference that pushed it. Only pushes the reader may see count (queries.visibility), so a prefix
matching only hidden images reads as unknown, never as "exists".

Used by ``GET /v1/trail`` (the CLI's ``imagetrail trace``) and callable by the web search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List

from sqlalchemy import select
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.queries import search
from imagetrail.queries.trail import pushes_joined
from imagetrail.queries.visibility import organization_condition
from imagetrail.reference import DIGEST_RE, SHORT_DIGEST_LENGTH, names_registry
from imagetrail.store.models.pipeline import ImageReference, ImageRelation, Push

MIN_PREFIX = SHORT_DIGEST_LENGTH  # hex digits: what the CLI and the web print (sha256: + 12)
MAX_CANDIDATES = 10  # listed in an ambiguity error
_HEX = re.compile(r"^[0-9a-f]+$")


class ResolveError(ValueError):
    """The text names no single image: too short, or ambiguous (the message lists candidates)."""


@dataclass(frozen=True)
class Target:
    kind: str  # "digest" | "reference"
    value: str  # sha256:<64 hex>, or registry/repository[:tag][@digest]


def digest_prefix(text: str) -> str:
    """The hex digits of a would-be short digest, or "" when ``text`` does not read as one.

    ``sha256:`` always means a digest; bare hex needs a digit and 7+ characters, so a repository called
    ``cafe`` stays a repository. Fewer than ``MIN_PREFIX`` digits is an error naming the minimum.
    """
    lowered = text.strip().lower()
    explicit = lowered.startswith("sha256:")
    hex_part = lowered[len("sha256:"):] if explicit else lowered
    if not _HEX.match(hex_part or "-") or len(hex_part) > 64:
        if explicit:
            raise ResolveError(f"{text[:80]!r} is not a digest; write it as sha256:<64 hex digits> "
                              f"or a unique prefix of at least {MIN_PREFIX}")
        return ""
    if not explicit and (len(hex_part) < 7 or not any(c.isdigit() for c in hex_part)):
        return ""
    if len(hex_part) < MIN_PREFIX:
        raise ResolveError(
            f"digest prefix {hex_part!r} has {len(hex_part)} hex digits; give at least {MIN_PREFIX} "
            "(as printed: sha256:<12 hex>) or the whole digest"
        )
    return hex_part


def digest_candidates(session: Session, principal: Principal, prefix: str, limit: int = MAX_CANDIDATES + 1) -> List[str]:
    """Visible digests starting with ``sha256:<prefix>``: pushed ones, and platform manifests of a visible
    pushed index (what a cluster runs). At most ``limit``, sorted."""
    pattern = "sha256:" + prefix + "%"  # hex only: nothing to escape
    pushed = pushes_joined(Push.digest).where(*search.digest_prefix("sha256:" + prefix), organization_condition(principal))
    visible_index = pushes_joined(Push.digest).where(organization_condition(principal))
    manifests = select(ImageRelation.manifest_digest).where(
        ImageRelation.manifest_digest.like(pattern), ImageRelation.index_digest.in_(visible_index)
    )
    found = set(session.scalars(pushed.distinct().limit(limit)))
    found.update(session.scalars(manifests.distinct().limit(limit)))
    return sorted(found)[:limit]


def registry_candidates(session: Session, principal: Principal, reference: str,
                        limit: int = MAX_CANDIDATES + 1) -> List[str]:
    """``registry/repository[:tag]`` of visible pushes of a reference written without a registry."""
    rest, at, digest = reference.strip().partition("@")
    name_end = rest.rfind("/")
    colon = rest.rfind(":")
    repository, tag = (rest[:colon], rest[colon + 1:]) if colon > name_end else (rest, "")
    query = (
        pushes_joined(ImageReference.registry_host)
        .join(ImageReference, ImageReference.id == Push.reference_id)
        .where(ImageReference.repository == repository.lower(), organization_condition(principal))
    )
    if tag:
        query = query.where(ImageReference.tag == tag)
    hosts = sorted(set(session.scalars(query.distinct().limit(limit))))
    suffix = (f":{tag}" if tag else "") + (f"@{digest}" if at else "")
    return [f"{host}/{repository.lower()}{suffix}" for host in hosts]


def _listed(candidates: List[str]) -> str:
    shown = ", ".join(candidates[:MAX_CANDIDATES])
    return shown + (" and more" if len(candidates) > MAX_CANDIDATES else "")


def resolve_target(session: Session, principal: Principal, text: str) -> Target:
    """``text`` as one exact digest or reference. A full digest or a reference with a registry is returned as
    is; a reference no visible push explains keeps Docker's reading (``nginx`` is docker.io/library/nginx)."""
    text = text.strip()
    if DIGEST_RE.match(text.lower()):
        return Target("digest", text.lower())
    prefix = digest_prefix(text)
    if prefix:
        found = digest_candidates(session, principal, prefix)
        if len(found) == 1:
            return Target("digest", found[0])
        if not found:
            raise ResolveError(f"no image you may read has a digest starting with sha256:{prefix}")
        raise ResolveError(f"sha256:{prefix} matches {'more than ' if len(found) > MAX_CANDIDATES else ''}"
                           f"{min(len(found), MAX_CANDIDATES)} images; give more digits: {_listed(found)}")
    if not names_registry(text):
        found = registry_candidates(session, principal, text)
        if len(found) == 1:
            return Target("reference", found[0])
        if len(found) > 1:
            raise ResolveError(f"{text[:200]!r} was pushed to {len(found) if len(found) <= MAX_CANDIDATES else 'more than ' + str(MAX_CANDIDATES)} "
                               f"registries; name one: {_listed(found)}")
    return Target("reference", text)
