"""Tracker clients: Azure DevOps work items (the ``azure-devops`` package) and GitHub issues (REST).

Each client is given the base URL the trust policy built from configuration (cloud/remediation_trust.py)
and its credential; nothing else decides where a credential goes. Errors never carry the credential.

GitHub (REST API version 2022-11-28): "Create an issue" ``POST /repos/{owner}/{repo}/issues`` and, to
find an item created earlier, "List repository issues" ``GET /repos/{owner}/{repo}/issues?labels=
imagetrail&state=all`` scanned for the item's marker. Listing by label rather than the search API:
search is rate-limited separately (30 requests a minute) and indexes new issues with a delay, so an
issue created a moment ago may not be found by it yet; the label listing is read from the repository
itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

GITHUB_API_VERSION = "2022-11-28"
ISSUE_LABEL = "imagetrail"
# Pages of 100 issues scanned for a marker before creating: bounds the cost on a busy repository.
MAX_LISTED_PAGES = 10
TIMEOUT_SECONDS = 30


class TrackerError(RuntimeError):
    """The tracker refused or could not be reached; the message never holds the credential."""


@dataclass(frozen=True)
class CreatedItem:
    id: int
    url: str


class AzureDevOpsBoards:
    """Work Items - Create: ``POST {org}/{project}/_apis/wit/workitems/${type}`` (JSON Patch)."""

    def __init__(self, org_url: str, pat: str):
        self.org_url = org_url
        self._pat = pat

    def create(self, project: str, work_item_type: str, document: List[dict]) -> CreatedItem:
        from azure.devops.connection import Connection
        from azure.devops.v7_1.work_item_tracking.models import JsonPatchOperation
        from msrest.authentication import BasicAuthentication

        try:
            connection = Connection(base_url=self.org_url, creds=BasicAuthentication("", self._pat))
            client = connection.clients_v7_1.get_work_item_tracking_client()
            operations = [JsonPatchOperation(op=o["op"], path=o["path"], value=o["value"]) for o in document]
            item = client.create_work_item(document=operations, project=project, type=work_item_type)
        except Exception as exc:  # the azure-devops package raises its own and requests' errors
            raise TrackerError(f"{type(exc).__name__}: {redact(str(exc), self._pat)}") from None
        return CreatedItem(item.id, f"{self.org_url}/{project}/_workitems/edit/{item.id}")


class GitHubIssues:
    """Issues in one GitHub (or GitHub Enterprise Server) instance, with a token allowed ``issues: write``."""

    def __init__(self, api_url: str, token: str, timeout: float = TIMEOUT_SECONDS):
        self._http = JsonApi(api_url, github_headers(token), token, "GitHub", timeout)

    def find(self, repository: str, marker: str) -> Optional[CreatedItem]:
        """An issue (open or closed) labelled ``imagetrail`` whose body holds ``marker``."""
        for page in range(1, MAX_LISTED_PAGES + 1):
            issues = self._http.call(
                "GET",
                f"/repos/{repository}/issues",
                params={"labels": ISSUE_LABEL, "state": "all", "per_page": 100, "page": page},
            ).json()
            for issue in issues:
                if "pull_request" not in issue and marker in (issue.get("body") or ""):
                    return CreatedItem(int(issue["number"]), str(issue.get("html_url") or ""))
            if len(issues) < 100:
                return None
        return None

    def create(
        self, repository: str, title: str, body: str, labels: List[str], assignees: List[str]
    ) -> CreatedItem:
        payload = {"title": title, "body": body, "labels": labels}
        if assignees:
            # GitHub drops assignees without push access to the repository instead of failing.
            payload["assignees"] = assignees
        issue = self._http.call("POST", f"/repos/{repository}/issues", json=payload).json()
        return CreatedItem(int(issue["number"]), str(issue.get("html_url") or ""))


def github_headers(token: str) -> dict:
    return {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {token}",
        "X-GitHub-Api-Version": GITHUB_API_VERSION,
        "User-Agent": "imagetrail",
    }


class JsonApi:
    """JSON calls to one configured base URL with one credential; errors say what failed, never the secret."""

    MAX_ANSWER_BYTES = 8 * 1024 * 1024

    def __init__(
        self, base_url: str, headers: dict, secret: str, name: str, timeout: float = TIMEOUT_SECONDS
    ):
        import requests

        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self._name = name
        self._timeout = timeout
        self._http = requests.Session()
        self._http.headers.update(headers)

    def call(self, method: str, path: str, missing_ok: bool = False, **kwargs):
        import requests

        try:
            response = self._http.request(method, self.base_url + path, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise TrackerError(f"{type(exc).__name__}: {redact(str(exc), self._secret)}") from None
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            try:
                message = response.json().get("message", "")
            except (ValueError, AttributeError):
                message = response.text
            raise TrackerError(
                f"{self._name} answered {response.status_code} to {method} {path}: "
                f"{redact(str(message), self._secret)}"
            )
        if len(response.content) > self.MAX_ANSWER_BYTES:
            raise TrackerError(f"{method} {path}: the answer is over {self.MAX_ANSWER_BYTES} bytes")
        return response

    def get_json(self, path: str, params: Optional[dict] = None):
        """The JSON answer of a GET, or None when the resource does not exist (404)."""
        response = self.call("GET", path, missing_ok=True, params=params)
        return None if response is None else response.json()


def redact(text: str, secret: str) -> str:
    return (text.replace(secret, "***") if secret else text)[:300]
