"""Kept reports of GitHub workflow runs: the artifacts ``imagetrail-report-<hex>`` the collector
uploads when it cannot deliver (see ``collector.gh_artifact``), read with a GitHub token.

REST API (version 2022-11-28): "List artifacts for a repository" (newest first, paged) and
"Download an artifact" (a redirect to a short-lived zip URL). A report is ingested with the
identity of the workflow run the artifact belongs to, in the claim names of GitHub's OIDC token.
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, Optional

from imagetrail.auth import SCOPE_INGEST, Principal
from imagetrail.auth.tokens import KIND_GITHUB_API
from imagetrail.bounded_read import BodyTooLarge, read_within
from imagetrail.services.reconcile.sources import KeptReport, SourceError

ARTIFACT_PREFIX = "imagetrail-report-"
API_VERSION = "2022-11-28"
PAGE_SIZE = 100
MAX_PAGES = 50
TIMEOUT = (5.0, 30.0)


def _created(artifact: Dict[str, Any]) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(str(artifact.get("created_at")).replace("Z", "+00:00"))
    except ValueError:
        return None


def run_claims(repository: str, artifact: Dict[str, Any]) -> Dict[str, Any]:
    run = artifact.get("workflow_run") or {}
    claims = {
        "repository": repository,
        "repository_owner": repository.split("/", 1)[0],
        "repository_id": str(run["repository_id"]) if run.get("repository_id") is not None else None,
        "run_id": str(run["id"]) if run.get("id") is not None else None,
        "sha": run.get("head_sha") or None,
        "ref": f"refs/heads/{run['head_branch']}" if run.get("head_branch") else None,
    }
    return {name: value for name, value in claims.items() if value is not None}


def _unzip(data: bytes, limit: int) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1 or not members[0].filename.endswith(".json"):
                raise ValueError("the artifact does not hold exactly one report file")
            if members[0].file_size > limit:
                raise ValueError(f"the report is larger than {limit} bytes")
            with archive.open(members[0]) as handle:
                content = handle.read(limit + 1)
    except zipfile.BadZipFile:
        raise ValueError("the artifact is not a zip file") from None
    if len(content) > limit:
        raise ValueError(f"the report is larger than {limit} bytes")
    return content


class GitHubArtifacts:
    def __init__(self, api_url: str, token: str) -> None:
        import requests

        self.api_url = api_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                                     "X-GitHub-Api-Version": API_VERSION, "User-Agent": "imagetrail-reconcile"})

    def close(self) -> None:
        self.session.close()

    def _get(self, path: str, stream: bool = False, **params: Any) -> Any:
        import requests

        try:
            response = self.session.get(self.api_url + path, params=params or None, timeout=TIMEOUT, stream=stream)
        except requests.RequestException as exc:
            raise SourceError(f"GitHub API at {self.api_url}: {type(exc).__name__}") from None
        if response.status_code in (401, 403, 404):
            raise SourceError(f"GitHub API answered HTTP {response.status_code} for {path.split('?')[0]}: the "
                              "token (IMAGETRAIL_GITHUB_TOKEN) needs read access to the repository's Actions")
        if response.status_code != 200:
            raise SourceError(f"GitHub API answered HTTP {response.status_code} for {path}")
        return response

    def _download(self, path: str, limit: int) -> bytes:
        try:
            return read_within(self._get(path, stream=True), limit)
        except BodyTooLarge:
            raise ValueError(f"the artifact is larger than {limit} bytes") from None

    def kept_reports(self, repository: str, since: datetime, limit: int) -> Iterator[KeptReport]:
        for page in range(1, MAX_PAGES + 1):
            listing = self._get(f"/repos/{repository}/actions/artifacts", per_page=PAGE_SIZE, page=page).json()
            artifacts = (listing.get("artifacts") or []) if isinstance(listing, dict) else []
            recent = False
            for artifact in artifacts:
                created = _created(artifact)
                if created is not None and created.astimezone(timezone.utc) < since:
                    continue
                recent = True
                name = str(artifact.get("name") or "")
                if not name.startswith(ARTIFACT_PREFIX) or artifact.get("expired"):
                    continue
                run = artifact.get("workflow_run") or {}
                where = f"{repository} run {run.get('id')} artifact {name}"
                if run.get("head_repository_id") not in (None, run.get("repository_id")):
                    # A pull request from a fork may upload artifacts, but gets no id token of this
                    # repository: its artifacts must not become this repository's reports either.
                    yield KeptReport(where, None, None, "the run came from a fork; not reconciled", retry=False)
                    continue
                try:
                    if int(artifact.get("size_in_bytes") or 0) > limit:
                        raise ValueError(f"the artifact is larger than {limit} bytes")
                    zipped = self._download(f"/repos/{repository}/actions/artifacts/{int(artifact['id'])}/zip", limit)
                    content = _unzip(zipped, limit)
                except (SourceError, ValueError, KeyError, TypeError) as exc:
                    yield KeptReport(where, None, None, str(exc)[:300])
                    continue
                claims = run_claims(repository, artifact)
                principal = Principal(kind=KIND_GITHUB_API, subject=f"repo:{repository}", scopes=frozenset({SCOPE_INGEST}),
                                      organizations=frozenset({claims["repository_owner"].lower()}), claims=claims)
                yield KeptReport(where, content, principal)
            if len(artifacts) < PAGE_SIZE or not recent:
                return  # the list is newest first: a page without a recent artifact ends it
