"""Local stand-ins for GitHub's two sides of a workflow artifact, sharing one store.

``Results``: the runner's artifact service as ``@actions/artifact`` (v2+) calls it - the Actions
Results Twirp API (``POST /twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact``
and ``/FinalizeArtifact``, JSON with proto field names, ``Authorization: Bearer
ACTIONS_RUNTIME_TOKEN`` whose ``scp`` claim names the run and job backend ids) and the signed
upload URL it hands out (Azure Blob Storage "Put Blob": ``PUT`` with ``x-ms-blob-type:
BlockBlob``). ``Rest``: the REST API ("List artifacts for a repository", "Download an artifact",
which redirects to a short-lived zip URL), version 2022-11-28 with a bearer token. Each request
is checked against those documents; a request that breaks them is recorded in ``errors``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

SERVICE = "/twirp/github.actions.results.api.v1.ArtifactService/"


def runtime_token(run_backend_id: str, job_backend_id: str) -> str:
    """An ACTIONS_RUNTIME_TOKEN-shaped JWT (unsigned here: the collector only reads its scp claim)."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    scp = f"Actions.GenericRead:00000000-0000-0000-0000-000000000000 Actions.Results:{run_backend_id}:{job_backend_id}"
    return f"{part({'typ': 'JWT', 'alg': 'RS256'})}.{part({'scp': scp, 'iss': 'vstoken'})}.{secrets.token_hex(16)}"


@dataclass
class Artifact:
    id: int
    name: str
    run_backend_id: str
    job_backend_id: str
    blob: Optional[bytes] = None
    finalized: bool = False
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


class ArtifactService:
    def __init__(self, run: dict, repository: str, rest_token: str) -> None:
        """``run``: the workflow run the REST API names for every artifact (id, repository_id, head_branch,
        head_sha); ``repository``: owner/name; ``rest_token``: what the REST API accepts."""
        self.run_backend_id, self.job_backend_id = secrets.token_hex(8), secrets.token_hex(8)
        self.token = runtime_token(self.run_backend_id, self.job_backend_id)
        self.run, self.repository, self.rest_token = run, repository, rest_token
        self.artifacts: Dict[str, Artifact] = {}
        self.requests: List[str] = []
        self.errors: List[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "ArtifactService":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, payload=None, raw: bytes = b"", headers: Optional[dict] = None) -> None:
                data = json.dumps(payload).encode() if payload is not None else raw
                self.send_response(status)
                for name, value in (headers or {"Content-Type": "application/json"}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _fail(self, status: int, message: str) -> None:
                service.errors.append(f"{self.command} {urlsplit(self.path).path}: {message}")
                self._send(status, {"code": "invalid_argument", "msg": message})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            # -- the Results service (Twirp) --------------------------------------------------
            def do_POST(self) -> None:  # noqa: N802
                path = urlsplit(self.path).path
                service.requests.append(f"POST {path}")
                if not path.startswith(SERVICE):
                    return self._fail(404, "not an ArtifactService method")
                if self.headers.get("Authorization") != f"Bearer {service.token}":
                    return self._fail(401, "Authorization is not Bearer ACTIONS_RUNTIME_TOKEN")
                if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                    return self._fail(415, "Twirp JSON requests need Content-Type application/json")
                try:
                    request = json.loads(self._body())
                except ValueError:
                    return self._fail(400, "the body is not JSON")
                if (request.get("workflow_run_backend_id"), request.get("workflow_job_run_backend_id")) != (
                        service.run_backend_id, service.job_backend_id):
                    return self._fail(400, "backend ids do not match the token's Actions.Results scope")
                name = request.get("name")
                method = path[len(SERVICE):]
                if method == "CreateArtifact":
                    if request.get("version") != 4 or not isinstance(name, str) or not name:
                        return self._fail(400, "CreateArtifact needs a name and version 4")
                    if name in service.artifacts:
                        return self._fail(409, f"an artifact named {name} already exists in this run")
                    artifact = Artifact(len(service.artifacts) + 1001, name, service.run_backend_id,
                                        service.job_backend_id)
                    service.artifacts[name] = artifact
                    return self._send(200, {"ok": True, "signed_upload_url":
                                            f"{service.url}/blob/{artifact.id}?sig={secrets.token_hex(8)}"})
                if method == "FinalizeArtifact":
                    artifact = service.artifacts.get(name)
                    if artifact is None or artifact.blob is None:
                        return self._fail(404, "finalize before create and upload")
                    size, digest = request.get("size"), request.get("hash")
                    if size != str(len(artifact.blob)):  # int64 is a JSON string in proto3's mapping
                        return self._fail(400, f"size {size!r} is not the uploaded size as an int64 string")
                    if digest != "sha256:" + hashlib.sha256(artifact.blob).hexdigest():
                        return self._fail(400, "hash is not sha256:<hex> of the uploaded content")
                    artifact.finalized = True
                    return self._send(200, {"ok": True, "artifact_id": str(artifact.id)})
                return self._fail(404, f"unknown method {method}")

            # -- the signed upload URL (Azure Blob "Put Blob") ----------------------------------
            def do_PUT(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                service.requests.append(f"PUT {url.path}")
                artifact = next((a for a in service.artifacts.values() if url.path == f"/blob/{a.id}"), None)
                if artifact is None or "sig" not in parse_qs(url.query):
                    return self._fail(403, "not a signed upload URL")
                if self.headers.get("x-ms-blob-type") != "BlockBlob":
                    return self._fail(400, "Put Blob needs x-ms-blob-type: BlockBlob")
                if self.headers.get("Authorization"):
                    return self._fail(400, "a signed URL must not be sent a credential")
                artifact.blob = self._body()
                self._send(201, raw=b"", headers={})

            # -- the REST API and the zip download -----------------------------------------------
            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                service.requests.append(f"GET {url.path}")
                if url.path.startswith("/download/"):
                    artifact = next((a for a in service.artifacts.values()
                                     if url.path == f"/download/{a.id}" and a.finalized), None)
                    if artifact is None:
                        return self._fail(404, "no such download")
                    return self._send(200, raw=artifact.blob, headers={"Content-Type": "application/zip"})
                if self.headers.get("Authorization") != f"Bearer {service.rest_token}":
                    return self._fail(401, "Authorization is not Bearer <token>")
                if self.headers.get("X-GitHub-Api-Version") != "2022-11-28":
                    return self._fail(400, "X-GitHub-Api-Version 2022-11-28 expected")
                base = f"/repos/{service.repository}/actions/artifacts"
                if url.path == base:
                    query = parse_qs(url.query)
                    per_page, page = int(query.get("per_page", ["30"])[0]), int(query.get("page", ["1"])[0])
                    if not 1 <= per_page <= 100:
                        return self._fail(422, "per_page must be 1-100")
                    done = sorted((a for a in service.artifacts.values() if a.finalized), key=lambda a: -a.id)
                    shown = done[(page - 1) * per_page:page * per_page]
                    return self._send(200, {"total_count": len(done), "artifacts": [{
                        "id": a.id, "name": a.name, "size_in_bytes": len(a.blob or b""), "expired": False,
                        "created_at": a.created_at, "archive_download_url": f"{service.url}{base}/{a.id}/zip",
                        "workflow_run": service.run} for a in shown]})
                if url.path.startswith(base + "/") and url.path.endswith("/zip"):
                    return self._send(302, raw=b"", headers={"Location": f"{service.url}/download/"
                                                                         f"{url.path[len(base) + 1:-4]}"})
                return self._fail(404, f"unknown REST path {url.path}")

        return Handler
