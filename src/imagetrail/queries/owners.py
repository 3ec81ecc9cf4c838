"""Owners: who should fix an image, in order, each with where that came from.

Sources, first to last: CODEOWNERS rules matching the image's Dockerfile or build context
(``codeowners``), the author of the built commit (``commit-author``), the configured mapping of
pipeline or repository to team and team to contacts (``team-mapping``), and the run's requester
(``requester``). Service identities and bots are never owners: build service accounts and app bots
would get the work while nobody is told.

``resolve`` reads the repository (cloud/owner_sources.py) and stores the list per run
(``run_owners``); until then a trail's list is its requester alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Iterable, List, Optional, Tuple

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.facts import CLAIMED, DISPUTED, VERIFIED
from imagetrail.parsers.attribution import KIND_PROVENANCE
from imagetrail.parsers.codeowners import DEFAULT_DOCKERFILE, CodeownersError, match, parse_text
from imagetrail.store.models.pipeline import Push
from imagetrail.store.models.registry import RegistryAttribution
from imagetrail.views.trail import OwnerEntry, Trail

SOURCE_CODEOWNERS = "codeowners"
SOURCE_COMMIT_AUTHOR = "commit-author"
SOURCE_TEAM_MAPPING = "team-mapping"
SOURCE_REQUESTER = "requester"
SOURCES = (SOURCE_CODEOWNERS, SOURCE_COMMIT_AUTHOR, SOURCE_TEAM_MAPPING, SOURCE_REQUESTER)
# The label a build may set (docker build --label) to name its Dockerfile, repository-relative.
DOCKERFILE_LABEL = "dev.imagetrail.dockerfile"
MAX_OWNERS = 20

# Identities that run pipelines but own nothing (matched case-insensitively against a name, login or
# e-mail; ``*`` is the only wildcard). Azure DevOps: the collection and project build service accounts,
# the TFS service identity and the Azure Pipelines app; GitHub: every app bot login ends in "[bot]",
# and the Actions bot is also named without it.
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


def _wildcard(pattern: str) -> "re.Pattern[str]":
    """``*`` matches any text; everything else literally (``[bot]`` is not a character class)."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.IGNORECASE)


@lru_cache(maxsize=32)
def _service_identity_pattern(patterns: Tuple[str, ...]) -> "re.Pattern[str]":
    """Every service-identity pattern as one compiled alternation (a trail page checks each push's requester)."""
    return re.compile("|".join(f"(?:{_wildcard(p).pattern})" for p in patterns), re.IGNORECASE)


@dataclass(frozen=True)
class OwnerPolicy:
    service_identities: Tuple[str, ...] = DEFAULT_SERVICE_IDENTITIES
    teams: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()  # key (org/project/pipeline | repository) -> teams
    contacts: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()  # team -> e-mails or @logins

    @classmethod
    def from_settings(cls, settings) -> "OwnerPolicy":
        return cls(
            DEFAULT_SERVICE_IDENTITIES + tuple(settings.owner_service_identities),
            tuple((k, tuple(v)) for k, v in settings.owner_teams.items()),
            tuple((k, tuple(v)) for k, v in settings.team_contacts.items()),
        )

    def is_service_identity(self, *values: Optional[str]) -> bool:
        pattern = _service_identity_pattern(self.service_identities)
        return any(value and pattern.fullmatch(value.strip()) for value in values)

    def keep(self, owners: Iterable[OwnerEntry]) -> List[OwnerEntry]:
        """``owners`` without service identities and repeats, in order, at most MAX_OWNERS."""
        kept: List[OwnerEntry] = []
        seen = set()
        for owner in owners:
            if self.is_service_identity(owner.name, owner.email, owner.login):
                continue
            key = (owner.email or owner.login or owner.name or "").lower()
            if not key or key in seen:
                continue
            seen.add(key)
            kept.append(owner)
        return kept[:MAX_OWNERS]

    def first(self, trail: Trail) -> Optional[OwnerEntry]:
        owners = self.keep(trail.owners)
        return owners[0] if owners else None

    def team_owners(self, trail: Trail) -> List[OwnerEntry]:
        """The configured teams of the run's pipeline, else of its repository, with their contacts."""
        teams = dict(self.teams)
        contacts = dict(self.contacts)
        keys = [
            (
                f"{trail.organization}/{trail.project}/{trail.pipeline or trail.pipeline_id}".lower(),
                "pipeline",
            ),
            (f"{trail.organization}/{trail.project}".lower(), "project"),
            ((trail.repository_name or "").lower(), "repository"),
        ]
        for key, fact in keys:
            if key and key in teams:
                evidence = trail.evidence.get(fact, CLAIMED)
                owners = []
                for team in teams[key]:
                    for contact in contacts.get(team, ()):
                        email = contact if "@" in contact and not contact.startswith("@") else None
                        login = contact if contact.startswith("@") else None
                        owners.append(
                            OwnerEntry(
                                source=SOURCE_TEAM_MAPPING,
                                name=team,
                                email=email,
                                login=login,
                                detail=f"{key} -> {team}",
                                evidence=evidence,
                            )
                        )
                return owners
        return []


def requester_owner(trail: Trail, policy: Optional[OwnerPolicy] = None) -> Optional[OwnerEntry]:
    """The run's requester as an owner (the last resort), unless it is a service identity."""
    if not (trail.owner_name or trail.owner_email):
        return None
    owner = _requester(trail.owner_name, trail.owner_email, trail.system == "github",
                       trail.evidence.get("requester", CLAIMED), policy or _DEFAULT_POLICY)
    return owner  # frozen, so one entry serves every push of this requester


_DEFAULT_POLICY = OwnerPolicy()


@lru_cache(maxsize=4096)
def _requester(name: Optional[str], email: Optional[str], github: bool, evidence: str,
               policy: OwnerPolicy) -> Optional[OwnerEntry]:
    # Remembered: the pushes of a trace page mostly share a few requesters, and building and checking each
    # entry (model validation, the service-identity pattern) was a tenth of the page's CPU.
    owner = OwnerEntry(source=SOURCE_REQUESTER, name=name, email=email, login=name if github else None,
                       evidence=evidence)
    return owner if policy.keep([owner]) else None


def _weakest(*levels: str) -> str:
    for level in (DISPUTED, CLAIMED):
        if level in levels:
            return level
    return VERIFIED


def from_codeowners(data: bytes, location: str, path: str, trail: Trail) -> List[OwnerEntry]:
    """The owners of the rule matching ``path`` in a CODEOWNERS file read at the run's commit."""
    found = match(parse_text(data), path)
    if found is None:
        return []
    evidence = _weakest(trail.evidence.get("repository", CLAIMED), trail.evidence.get("commit", CLAIMED))
    detail = f"{location} line {found.line}: {found.pattern} (matching {path})"
    owners = []
    for kind, value in found.owners:
        if kind == "EMAIL":
            owners.append(OwnerEntry(source=SOURCE_CODEOWNERS, email=value, detail=detail, evidence=evidence))
        else:
            owners.append(OwnerEntry(source=SOURCE_CODEOWNERS, login=value, detail=detail, evidence=evidence))
    return owners


def ordered(
    codeowners: List[OwnerEntry], author: Optional[OwnerEntry], trail: Trail, policy: OwnerPolicy
) -> List[OwnerEntry]:
    requester = requester_owner(trail, policy)
    return policy.keep(
        [
            *codeowners,
            *([author] if author else []),
            *policy.team_owners(trail),
            *([requester] if requester else []),
        ]
    )


def dockerfile_path(session: Session, digest: str) -> str:
    """The image's Dockerfile, repository-relative: the push's ``dev.imagetrail.dockerfile`` label, else
    the entry point BuildKit's provenance attestation names (recorded by the registry side), else
    ``Dockerfile`` at the root."""
    labels = session.execute(select(Push.labels).where(Push.digest == digest).limit(1)).scalar()
    labelled = (labels or {}).get(DOCKERFILE_LABEL)
    if labelled:
        return labelled
    for facts in session.execute(
        select(RegistryAttribution.facts).where(
            RegistryAttribution.digest == digest, RegistryAttribution.kind == KIND_PROVENANCE
        )
    ).scalars():
        if isinstance(facts, dict) and isinstance(facts.get("entry_point"), str) and facts["entry_point"]:
            return facts["entry_point"]
    return DEFAULT_DOCKERFILE


def store(sessions: sessionmaker, run_key: int, owners: List[OwnerEntry]) -> None:
    """Replace the run's stored owners (one transaction)."""
    from imagetrail.store.models.owners import RunOwner

    now = datetime.now(timezone.utc)
    with sessions() as session, session.begin():
        session.execute(delete(RunOwner).where(RunOwner.run_id == run_key))
        for position, owner in enumerate(owners):
            session.add(
                RunOwner(
                    run_id=run_key,
                    position=position,
                    source=owner.source,
                    name=owner.name,
                    email=owner.email,
                    login=owner.login,
                    detail=(owner.detail or "")[:1024] or None,
                    evidence=owner.evidence,
                    resolved_at=now,
                )
            )


__all__ = ["OwnerPolicy", "requester_owner", "from_codeowners", "ordered", "store", "CodeownersError"]
