"""A local stand-in for the few Azure DevOps REST endpoints `imagetrail reconcile` uses.

It answers what the azure-devops Python package asks for (read from its source):
GET _apis/ResourceAreas (location service), OPTIONS _apis (resource locations: route
templates and versions), Builds - List (``minTime`` filters on the finish time), Builds - Get,
Attachments - List of a type, Attachments - Get. Every request must carry the PAT as Basic
auth (or ``bearer``, an Entra access token, as Bearer), and every REST call an api-version in
its Accept header; anything else is answered 400/401 and recorded as a violation.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

BUILD_AREA = "965220d5-5bb9-42cf-8d67-9b146df2a5a4"
LOCATIONS = [
    {"id": "e81700f7-3be2-46de-8624-2eb35882fcaa", "area": "Location", "resourceName": "ResourceAreas",
     "routeTemplate": "_apis/{resource}/{areaId}", "resourceVersion": 1, "minVersion": 3.2, "maxVersion": 7.1,
     "releasedVersion": "0.0"},
    {"id": "0cd358e1-9217-4d94-8269-1c1ee6f93dcf", "area": "build", "resourceName": "builds",
     "routeTemplate": "{project}/_apis/build/{resource}/{buildId}", "resourceVersion": 7, "minVersion": 1.0,
     "maxVersion": 7.1, "releasedVersion": "7.0"},
    {"id": "f2192269-89fa-4f94-baf6-8fb128c55159", "area": "build", "resourceName": "attachments",
     "routeTemplate": "{project}/_apis/build/builds/{buildId}/{resource}/{type}", "resourceVersion": 2,
     "minVersion": 4.1, "maxVersion": 7.1, "releasedVersion": "7.0"},
    {"id": "af5122d3-3438-485e-a25a-2dbbfde84ee6", "area": "build", "resourceName": "attachments",
     "routeTemplate": "{project}/_apis/build/builds/{buildId}/{timelineId}/{recordId}/{resource}/{type}/{name}",
     "resourceVersion": 2, "minVersion": 4.1, "maxVersion": 7.1, "releasedVersion": "7.0"},
]


class FakeAzureDevOps:
    def __init__(self, organization: str, project: str, pat: str, project_id: Optional[str] = None,
                 definition_id: int = 12, bearer: Optional[str] = None):
        self.organization, self.project, self.pat, self.bearer = organization, project, pat, bearer
        self.project_id = project_id or str(uuid.uuid4())
        self.definition_id = definition_id
        self.builds: Dict[int, List[Tuple[str, bytes]]] = {}  # build id -> [(attachment name, content)]
        self.finished: Dict[int, datetime] = {}  # build id -> finish time (default: now)
        self.details: Dict[int, Dict[str, Any]] = {}  # build id -> fields overriding build_json's
        self.timeline, self.record = str(uuid.uuid4()), str(uuid.uuid4())
        self.requests: List[str] = []
        self.violations: List[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, payload=None, raw: bytes = b"", content_type="application/json"):
                data = json.dumps(payload).encode() if payload is not None else raw
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                expected = {"Basic " + base64.b64encode(f":{fake.pat}".encode()).decode()}
                if fake.bearer:
                    expected.add(f"Bearer {fake.bearer}")
                if self.headers.get("Authorization") not in expected:
                    fake.violations.append(f"{self.command} {self.path}: bad Authorization header")
                    self._reply(401, {"message": "unauthorised"})
                    return False
                return True

            def do_OPTIONS(self):  # noqa: N802
                fake.requests.append(f"OPTIONS {self.path}")
                if not self._authorised():
                    return
                if urlsplit(self.path).path.rstrip("/") != f"/{fake.organization}/_apis":
                    return self._reply(404, {"message": "no such location service"})
                self._reply(200, {"count": len(LOCATIONS), "value": LOCATIONS})

            def do_GET(self):  # noqa: N802
                fake.requests.append(f"GET {self.path}")
                if not self._authorised():
                    return
                accept = self.headers.get("Accept", "")
                if "api-version=" not in accept:
                    fake.violations.append(f"GET {self.path}: no api-version in Accept ({accept!r})")
                    return self._reply(400, {"message": "api-version required"})
                parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
                base = f"http://127.0.0.1:{fake.port}/{fake.organization}"
                if parts[1:3] == ["_apis", "ResourceAreas"]:
                    return self._reply(200, {"count": 1, "value": [
                        {"id": BUILD_AREA, "name": "build", "locationUrl": base + "/"}]})
                if parts[0] != fake.organization or parts[1] != fake.project or parts[2:4] != ["_apis", "build"]:
                    return self._reply(404, {"message": f"unknown path {self.path}"})
                rest = parts[4:]
                if rest == ["builds"]:
                    query = parse_qs(urlsplit(self.path).query)
                    since = None
                    try:
                        since = datetime.fromisoformat(query["minTime"][0].replace("Z", "+00:00"))
                    except (KeyError, ValueError):
                        if fake.require_min_time:
                            fake.violations.append(f"GET {self.path}: Builds - List without a valid minTime")
                    if since is not None and since.tzinfo is None:
                        since = since.replace(tzinfo=timezone.utc)
                    value = [fake.build_json(b) for b in sorted(fake.builds)
                             if since is None or fake.finish_time(b) >= since]
                    return self._reply(200, {"count": len(value), "value": value})
                if len(rest) == 2 and rest[0] == "builds" and rest[1].isdigit():
                    if int(rest[1]) not in fake.builds:
                        return self._reply(404, {"message": f"build {rest[1]} not found"})
                    fake.gets.append(int(rest[1]))
                    return self._reply(200, fake.build_json(int(rest[1])))
                if len(rest) == 4 and rest[0] == "builds" and rest[2] == "attachments":
                    build = int(rest[1])
                    value = [{"name": name, "_links": {"self": {"href": (
                        f"{base}/{fake.project}/_apis/build/builds/{build}/{fake.timeline}/{fake.record}"
                        f"/attachments/{rest[3]}/{name}")}}}
                        for name, _ in fake.builds.get(build, [])] if rest[3] == "imagetrail.report" else []
                    return self._reply(200, {"count": len(value), "value": value})
                if len(rest) == 7 and rest[0] == "builds" and rest[4] == "attachments":
                    build, timeline, record, _, kind, name = int(rest[1]), rest[2], rest[3], rest[4], rest[5], rest[6]
                    for attached, content in fake.builds.get(build, []):
                        if (attached, timeline, record, kind) == (name, fake.timeline, fake.record,
                                                                  "imagetrail.report"):
                            return self._reply(200, raw=content, content_type="application/octet-stream")
                return self._reply(404, {"message": f"unknown path {self.path}"})

            def log_message(self, *args):
                pass

        self.gets: List[int] = []  # Builds - Get requests, by build id
        self.require_min_time = True
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.org_url = f"http://127.0.0.1:{self.port}/{organization}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def finish_time(self, build: int) -> datetime:
        return self.finished.setdefault(build, datetime.now(timezone.utc))

    def build_json(self, build: int) -> Dict[str, Any]:
        """A build as Builds - List / Get answer it (the fields reconcile reads)."""
        data = {
            "id": build, "buildNumber": f"2024.{build}", "status": "completed", "result": "succeeded",
            "finishTime": self.finish_time(build).isoformat().replace("+00:00", "Z"),
            "project": {"id": self.project_id, "name": self.project},
            "definition": {"id": self.definition_id, "name": "web-ci"},
            "repository": {"id": "r1", "name": "web", "type": "TfsGit",
                           "url": f"https://dev.azure.com/{self.organization}/{self.project}/_git/web"},
            "sourceBranch": "refs/heads/main", "sourceVersion": "a" * 40,
        }
        data.update(self.details.get(build, {}))
        return data

    def __enter__(self) -> "FakeAzureDevOps":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
