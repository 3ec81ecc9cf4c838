"""Owners: who should fix an image, in order, each with where that came from.

Sources, first to last: CODEOWNERS rules matching the image's Dockerfile or build context
(``codeowners``), the author of the built commit (``commit-author``), the configured mapping of
pipeline or repository to team (``team-mapping``), and the run's requester (``requester``).
Service identities and bots are never owners: build service accounts and app bots would get the
work while nobody is told.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from imagetrail.cloud.explorer import Trail

SOURCE_CODEOWNERS = "codeowners"
SOURCE_COMMIT_AUTHOR = "commit-author"
SOURCE_TEAM_MAPPING = "team-mapping"
SOURCE_REQUESTER = "requester"
SOURCES = (SOURCE_CODEOWNERS, SOURCE_COMMIT_AUTHOR, SOURCE_TEAM_MAPPING, SOURCE_REQUESTER)

# Identities that run pipelines but own nothing (matched case-insensitively against a name, login or
# e-mail, shell-style wildcards). Azure DevOps: the collection and project build service accounts, the
# TFS service identity and the Azure Pipelines app's identity; GitHub: every app bot login ends in
# "[bot]", and the Actions bot is also named without it.
DEFAULT_SERVICE_IDENTITIES = (
    "Project Collection Build Service*",
    "* Build Service (*)",
    "Microsoft.VisualStudio.Services.TFS",
    "Azure Pipelines",
    "*[bot]",
    "github-actions",
    "dependabot",
    "renovate",
    "noreply@github.com",
)


@dataclass(frozen=True)
class Owner:
    source: str  # codeowners | commit-author | team-mapping | requester
    name: Optional[str] = None
    email: Optional[str] = None
    login: Optional[str] = None  # GitHub login or team (@org/team), when the source knows it
    detail: Optional[str] = None  # e.g. the CODEOWNERS rule that matched, or the team's name

    @property
    def label(self) -> str:
        return self.name or self.login or self.email or "?"


@dataclass(frozen=True)
class OwnerPolicy:
    service_identities: Tuple[str, ...] = DEFAULT_SERVICE_IDENTITIES

    @classmethod
    def from_settings(cls, settings) -> "OwnerPolicy":
        extra = tuple(getattr(settings, "owner_service_identities", ()) or ())
        return cls(DEFAULT_SERVICE_IDENTITIES + extra)

    def is_service_identity(self, *values: Optional[str]) -> bool:
        patterns = [_wildcard(p) for p in self.service_identities]
        return any(value and any(p.fullmatch(value.strip()) for p in patterns) for value in values)

    def keep(self, owners: Iterable[Owner]) -> List[Owner]:
        """``owners`` without service identities and repeats, in order."""
        kept: List[Owner] = []
        seen = set()
        for owner in owners:
            if self.is_service_identity(owner.name, owner.email, owner.login):
                continue
            key = (owner.email or owner.login or owner.name or "").lower()
            if not key or key in seen:
                continue
            seen.add(key)
            kept.append(owner)
        return kept

    def first(self, trail: Trail) -> Optional[Owner]:
        """The first owner of ``trail``'s list (the list the trail carries, else its requester)."""
        owners = self.keep(trail_owners(trail))
        return owners[0] if owners else None


def _wildcard(pattern: str) -> "re.Pattern[str]":
    """``*`` matches any text; everything else literally (``[bot]`` is not a character class)."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.IGNORECASE)


def trail_owners(trail: Trail) -> List[Owner]:
    """The owners a trail carries, else its requester alone."""
    listed = [Owner(**o) for o in getattr(trail, "owners", None) or []]
    if listed:
        return listed
    if not (trail.owner_name or trail.owner_email):
        return []
    github = trail.system == "github"
    return [Owner(SOURCE_REQUESTER, name=trail.owner_name, email=trail.owner_email,
                  login=trail.owner_name if github else None)]
