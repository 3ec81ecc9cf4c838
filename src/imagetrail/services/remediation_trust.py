"""Remediation trust policy: which tracker an image's item goes to, and where credentials may be sent.

Both answers are built from the server's configuration, never taken from a report: reports come from
pipelines, and the server must not send its Azure DevOps PAT or GitHub token wherever a report says.
An image goes to the tracker of the CI system that built it and never to the other one: a GitHub
workflow's image is never filed in a same-named Azure DevOps organisation, and the other way round.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import FrozenSet, Iterable, Optional, Union
from urllib.parse import urlsplit, urlunsplit

from imagetrail.facts import DISPUTED
from imagetrail.views.trail import Trail

SYSTEM_AZURE_DEVOPS = "azure-devops"
SYSTEM_GITHUB = "github"
PAT_VARIABLE = "IMAGETRAIL_AZURE_DEVOPS_PAT"
SERVICES_URL_VARIABLE = "IMAGETRAIL_AZURE_DEVOPS_URL"
SERVER_URLS_VARIABLE = "IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS"
GITHUB_TOKEN_VARIABLE = "IMAGETRAIL_GITHUB_TOKEN"
GITHUB_API_URL_VARIABLE = "IMAGETRAIL_GITHUB_API_URL"
GITHUB_SERVER_URL_VARIABLE = "IMAGETRAIL_GITHUB_SERVER_URL"
UNTRUSTED_REASON = f"not remediable: organisation URL not trusted (set {SERVER_URLS_VARIABLE})"
UNTRUSTED_GITHUB_REASON = f"not remediable: GitHub server not trusted (set {GITHUB_SERVER_URL_VARIABLE})"
PUBLIC_SERVICES_HOST = "dev.azure.com"
# Azure DevOps Services organisation names: letters, digits and hyphens, starting and ending with a
# letter or digit, at most 50 characters. Checked because the name becomes a path segment of the URL.
ORGANIZATION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")
# GitHub logins (at most 39 characters, alphanumerics and inner hyphens) and repository names.
GITHUB_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?/[A-Za-z0-9._-]{1,100}")


class RemediationConfigError(RuntimeError):
    """Remediation cannot run: the message says which setting is missing."""


@dataclass(frozen=True)
class Destination:
    """Where one image's item goes: the tracker, the base URL credentials go to, and the container."""

    tracker: str  # azure-devops | github
    base_url: str  # Azure DevOps organisation / collection URL, or the GitHub REST API URL
    container: str  # Azure DevOps project, or GitHub owner/repo
    web_url: str  # what a person opens to see the items there


def normalized_url(url: str) -> str:
    """``url`` with its scheme and host in lower case and no trailing slash; the rest compared as is."""
    parts = urlsplit(url.strip())
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, parts.fragment)
    )


def configured_url(value: str, variable: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise RemediationConfigError(
            f"{variable}: {value.strip()!r} is not an http(s) URL such as https://tfs.example.com/tfs/"
            "DefaultCollection"
        )
    return normalized_url(value)


def server_collection_urls(urls: Iterable[str]) -> FrozenSet[str]:
    """The trusted Azure DevOps Server collection URLs (``settings.azure_devops_server_urls``, from
    ``IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS``), normalised."""
    return frozenset(configured_url(v, SERVER_URLS_VARIABLE) for v in urls if v.strip())


def trusted_organization_url(
    services_url: str, trusted_servers: FrozenSet[str], organization: str, server_url: Optional[str]
) -> Optional[str]:
    """Where the PAT may be sent for a run of ``organization`` that reported ``server_url``; None: nowhere.

    A run of Azure DevOps Services (no serverUrl, ``{services_url}/{org}``, ``https://dev.azure.com/{org}``
    or the older ``https://{org}.visualstudio.com``) goes to ``{services_url}/{org}``; a run of Azure
    DevOps Server only to a collection URL listed in ``IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS``.
    """
    services = normalized_url(services_url)
    if server_url and normalized_url(server_url) in trusted_servers:
        return normalized_url(server_url)
    if not ORGANIZATION_NAME.fullmatch(organization or ""):
        return None
    services_org = f"{services}/{organization}".lower()
    if not server_url or normalized_url(server_url).lower() in (
        services_org,
        f"https://{PUBLIC_SERVICES_HOST}/{organization}".lower(),
        f"https://{organization}.visualstudio.com".lower(),
    ):
        return f"{services}/{organization}"
    return None


def github_repository(trail: Trail, github_server_url: str) -> Optional[str]:
    """The ``owner/repo`` a GitHub workflow's image is filed in, or None when it must not be.

    The repository is the run's own (``project`` is ``owner/repo`` for GitHub runs) and must belong
    to the run's owner; the run must come from the configured GitHub server (github.com by default).
    """
    expected = normalized_url(github_server_url).lower()
    if trail.server_url and normalized_url(trail.server_url).lower() != expected:
        return None
    repository = trail.project or ""
    if not GITHUB_REPOSITORY.fullmatch(repository):
        return None
    if repository.split("/", 1)[0].lower() != (trail.organization or "").lower():
        return None
    return repository


@dataclass(frozen=True)
class Policy:
    """The configuration the routing reads: built once per remediation from Settings."""

    azure_devops_services_url: str
    azure_devops_servers: FrozenSet[str]
    github_api_url: str
    github_server_url: str

    @classmethod
    def from_settings(cls, settings) -> "Policy":
        """Raises RemediationConfigError naming the setting when a URL is malformed."""
        return cls(
            azure_devops_services_url=configured_url(settings.azure_devops_url, SERVICES_URL_VARIABLE),
            azure_devops_servers=server_collection_urls(settings.azure_devops_server_urls),
            github_api_url=configured_url(settings.github_api_url, GITHUB_API_URL_VARIABLE),
            github_server_url=configured_url(settings.github_server_url, GITHUB_SERVER_URL_VARIABLE),
        )


def route(trail: Trail, policy: Policy) -> Union[Destination, str]:
    """The destination of an image's item, or why it has none (a sentence for the outcome)."""
    if trail.system == SYSTEM_GITHUB:
        if trail.evidence.get("repository") == DISPUTED:
            return "not remediable: reports of this run disagree on its repository"
        repository = github_repository(trail, policy.github_server_url)
        if repository is None:
            reported = (trail.server_url or "")[:200]
            return f"{UNTRUSTED_GITHUB_REASON}; the run reported {reported!r} and {trail.project[:200]!r}"
        web = normalized_url(policy.github_server_url)
        return Destination(SYSTEM_GITHUB, policy.github_api_url, repository, f"{web}/{repository}/issues")
    if trail.system != SYSTEM_AZURE_DEVOPS:
        return f"not remediable: no tracker for runs of {trail.system[:40]!r}"
    org_url = trusted_organization_url(
        policy.azure_devops_services_url, policy.azure_devops_servers, trail.organization, trail.server_url
    )
    if org_url is None:
        return f"{UNTRUSTED_REASON}; the run reported {(trail.server_url or '')[:200]!r}"
    return Destination(SYSTEM_AZURE_DEVOPS, org_url, trail.project, f"{org_url}/{trail.project}/_workitems")
