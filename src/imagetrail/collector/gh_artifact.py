"""GitHub Actions: keep an undelivered report as a workflow artifact, so reconcile can fetch it.

The runner's artifact service is the Actions Results service's Twirp API that ``@actions/artifact``
(v2 and later) uses, JSON over HTTP with the job's ``ACTIONS_RUNTIME_TOKEN`` at
``ACTIONS_RESULTS_URL``: ``CreateArtifact`` (answer: a signed upload URL), the zip uploaded to that
URL with Azure Blob Storage's "Put Blob", then ``FinalizeArtifact`` with its size and SHA-256.
The run and job backend ids come from the token's ``scp`` claim (``Actions.Results:<run>:<job>``).
Standard library only, and a few seconds at most: this runs when the backend is already down.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import zipfile
from typing import Any, Dict, Mapping, Tuple

SERVICE = "github.actions.results.api.v1.ArtifactService"
ARTIFACT_PREFIX = "imagetrail-report-"
BUDGET_SECONDS = 4.0
REQUEST_CAP_SECONDS = 3.0


class ArtifactError(Exception):
    pass


def available(env: Mapping[str, str]) -> bool:
    return bool((env.get("ACTIONS_RUNTIME_TOKEN") or "").strip() and (env.get("ACTIONS_RESULTS_URL") or "").strip())


def backend_ids(token: str) -> Tuple[str, str]:
    """(workflow run backend id, job run backend id) from the runtime token's scp claim."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        scopes = str(claims.get("scp") or "").split()
    except (IndexError, ValueError, AttributeError):
        raise ArtifactError("ACTIONS_RUNTIME_TOKEN is not a JWT") from None
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) == 3 and parts[0] == "Actions.Results" and parts[1] and parts[2]:
            return parts[1], parts[2]
    raise ArtifactError("ACTIONS_RUNTIME_TOKEN grants no Actions.Results scope")


def zipped(filename: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(filename, content)
    return buffer.getvalue()


class _Client:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.token = (env.get("ACTIONS_RUNTIME_TOKEN") or "").strip()
        self.base = (env.get("ACTIONS_RESULTS_URL") or "").strip().rstrip("/")
        self.end = time.monotonic() + BUDGET_SECONDS

    def _timeout(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0.1:
            raise ArtifactError("no time left")
        return min(REQUEST_CAP_SECONDS, left)

    def _send(self, url: str, method: str, data: bytes, headers: Dict[str, str]) -> Tuple[int, bytes]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout()) as response:
                return response.status, response.read(65536)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(2048)
        except OSError as exc:  # URLError, timeouts, refused connections
            raise ArtifactError(f"{method} {url.split('?', 1)[0]} failed: {type(exc).__name__}") from None

    def rpc(self, method: str, request: Dict[str, Any]) -> Dict[str, Any]:
        status, raw = self._send(f"{self.base}/twirp/{SERVICE}/{method}", "POST", json.dumps(request).encode(),
                                 {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                                  "User-Agent": "imagetrail-collector"})
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {}
        if status != 200 or not isinstance(answer, dict) or not answer.get("ok"):
            detail = answer.get("msg") if isinstance(answer, dict) else None
            raise ArtifactError(f"{method} answered HTTP {status}" + (f": {str(detail)[:200]}" if detail else ""))
        return answer

    def put_blob(self, url: str, content: bytes) -> None:
        status, _ = self._send(url, "PUT", content, {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/zip"})
        if status not in (200, 201):
            raise ArtifactError(f"uploading the artifact answered HTTP {status}")


def upload_report(env: Mapping[str, str], report_id_hex: str, filename: str, content: bytes) -> str:
    """Upload ``content`` as artifact ``imagetrail-report-<hex>`` (one file, zipped); returns its name."""
    run_id, job_id = backend_ids((env.get("ACTIONS_RUNTIME_TOKEN") or "").strip())
    client = _Client(env)
    name = ARTIFACT_PREFIX + report_id_hex
    ids = {"workflow_run_backend_id": run_id, "workflow_job_run_backend_id": job_id, "name": name}
    created = client.rpc("CreateArtifact", {**ids, "version": 4})
    url = created.get("signed_upload_url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ArtifactError("CreateArtifact answered without a signed_upload_url")
    archive = zipped(filename, content)
    client.put_blob(url, archive)
    # int64 fields are strings in protobuf's JSON mapping.
    client.rpc("FinalizeArtifact", {**ids, "size": str(len(archive)),
                                    "hash": "sha256:" + hashlib.sha256(archive).hexdigest()})
    return name
