"""Where owners are read from: the repository at the built commit, through the CI system's own API.

GitHub (REST API 2022-11-28): "Get repository content" ``GET /repos/{owner}/{repo}/contents/{path}?ref=
{sha}`` for CODEOWNERS and "Get a commit" ``GET /repos/{owner}/{repo}/commits/{sha}`` for its author.
Azure Repos (REST 7.1): Git "Items - Get" ``GET {org}/{project}/_apis/git/repositories/{repo}/items?
path=&versionDescriptor.version={sha}&versionDescriptor.versionType=commit&includeContent=true`` and
Git "Commits - Get" ``GET {org}/{project}/_apis/git/repositories/{repo}/commits/{sha}``.

The base URL and credential come from the remediation trust policy (cloud/remediation_trust.py): the
same URLs and tokens remediation may use, never a URL from a report.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple
from urllib.parse import quote

from imagetrail.parsers.codeowners import AZURE_REPOS_LOCATIONS, GITHUB_LOCATIONS
from imagetrail.remote.trackers import JsonApi, github_headers


@dataclass(frozen=True)
class CommitAuthor:
    name: Optional[str]
    email: Optional[str]
    login: Optional[str] = None
    bot: bool = False  # GitHub says the author account is a bot (author.type == "Bot")


class GitHubRepository:
    def __init__(self, api_url: str, token: str, repository: str):
        self.repository = repository
        self._http = JsonApi(api_url, github_headers(token), token, "GitHub")

    def codeowners(
        self, commit: str, locations: Sequence[str] = GITHUB_LOCATIONS
    ) -> Optional[Tuple[str, bytes]]:
        for location in locations:
            answer = self._http.get_json(
                f"/repos/{self.repository}/contents/{quote(location)}", {"ref": commit}
            )
            if (
                isinstance(answer, dict)
                and answer.get("type") == "file"
                and answer.get("encoding") == "base64"
            ):
                return location, base64.b64decode(answer.get("content") or "")
        return None

    def commit_author(self, commit: str) -> Optional[CommitAuthor]:
        answer = self._http.get_json(f"/repos/{self.repository}/commits/{quote(commit)}")
        if not isinstance(answer, dict):
            return None
        author = (answer.get("commit") or {}).get("author") or {}
        account = answer.get("author") or {}
        return CommitAuthor(
            author.get("name"), author.get("email"), account.get("login"), bot=account.get("type") == "Bot"
        )


class AzureRepository:
    API_VERSION = "7.1"

    def __init__(self, org_url: str, pat: str, project: str, repository: str):
        token = base64.b64encode(f":{pat}".encode()).decode()
        self._http = JsonApi(
            org_url, {"Authorization": f"Basic {token}", "Accept": "application/json"}, pat, "Azure DevOps"
        )
        self._base = f"/{quote(project)}/_apis/git/repositories/{quote(repository)}"

    def codeowners(
        self, commit: str, locations: Sequence[str] = AZURE_REPOS_LOCATIONS
    ) -> Optional[Tuple[str, bytes]]:
        for location in locations:
            answer = self._http.get_json(
                f"{self._base}/items",
                {
                    "path": "/" + location,
                    "versionDescriptor.version": commit,
                    "versionDescriptor.versionType": "commit",
                    "includeContent": "true",
                    "api-version": self.API_VERSION,
                },
            )
            if isinstance(answer, dict) and isinstance(answer.get("content"), str):
                return location, answer["content"].encode()
        return None

    def commit_author(self, commit: str) -> Optional[CommitAuthor]:
        answer = self._http.get_json(
            f"{self._base}/commits/{quote(commit)}", {"api-version": self.API_VERSION}
        )
        if not isinstance(answer, dict):
            return None
        author = answer.get("author") or {}
        return CommitAuthor(author.get("name"), author.get("email"))
