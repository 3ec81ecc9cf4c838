"""A local stand-in for the Azure DevOps REST endpoints ImageTrail calls, checking each request.

One organisation on 127.0.0.1, serving what the ``azure-devops`` package asks for (read from its
source) and the Git calls made with ``requests``:

- location service: ``OPTIONS {org}/_apis`` (resource locations: route templates and versions) and
  ``GET {org}/_apis/ResourceAreas`` (where each area lives);
- remediation: "Work Items - Create" ``POST {org}/{project}/_apis/wit/workitems/${type}`` (REST 7.1),
  ``Content-Type: application/json-patch+json`` and a JSON Patch array of add operations;
- owners: Git "Items - Get" ``GET {org}/{project}/_apis/git/repositories/{repo}/items?path=&
  versionDescriptor.version=&versionDescriptor.versionType=commit&includeContent=true`` and "Commits -
  Get" ``.../commits/{commitId}`` (from ``files`` and ``commits``), ``api-version=7.1`` in the query;
- reconcile (``project`` only): Builds - List (``minTime`` filters on the finish time), Builds - Get,
  Attachments - List of a type and Attachments - Get (from ``builds``).

Every request must carry the PAT as Basic auth (or ``bearer``, an Entra access token, as Bearer), and
every call through the package an api-version in its Accept header. A request that breaks the
contract is recorded in ``errors`` (tests assert it stays empty) and answered 400/401.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Set, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.json_handler import JsonHandler

WIT_AREA_ID = "5264459e-e5e0-4bd8-b118-0985e68a4ec5"
BUILD_AREA_ID = "965220d5-5bb9-42cf-8d67-9b146df2a5a4"
REPORT_ATTACHMENT = "imagetrail.report"
_VERSIONS = {"resourceVersion": 1, "minVersion": 1.0, "maxVersion": 7.1, "releasedVersion": "7.0"}
LOCATIONS = [
    {"id": "e81700f7-3be2-46de-8624-2eb35882fcaa", "area": "Location", "resourceName": "ResourceAreas",
     "routeTemplate": "_apis/{resource}/{areaId}", **_VERSIONS},
    {"id": "62d3d110-0047-428c-ad3c-4fe872c91c74", "area": "wit", "resourceName": "workItems",
     "routeTemplate": "{project}/_apis/{area}/{resource}/${type}", **_VERSIONS},
    {"id": "0cd358e1-9217-4d94-8269-1c1ee6f93dcf", "area": "build", "resourceName": "builds",
     "routeTemplate": "{project}/_apis/build/{resource}/{buildId}", **_VERSIONS, "resourceVersion": 7},
    {"id": "f2192269-89fa-4f94-baf6-8fb128c55159", "area": "build", "resourceName": "attachments",
     "routeTemplate": "{project}/_apis/build/builds/{buildId}/{resource}/{type}", **_VERSIONS, "resourceVersion": 2},
    {"id": "af5122d3-3438-485e-a25a-2dbbfde84ee6", "area": "build", "resourceName": "attachments",
     "routeTemplate": "{project}/_apis/build/builds/{buildId}/{timelineId}/{recordId}/{resource}/{type}/{name}",
     **_VERSIONS, "resourceVersion": 2},
]


class AzureDevOpsServer:
    """Start with ``with AzureDevOpsServer("contoso", pat) as ado:``; ``ado.url`` is the organisation URL."""

    def __init__(self, organization: str, pat: str, *, project: str = "Web", project_id: Optional[str] = None,
                 definition_id: int = 12, bearer: Optional[str] = None):
        self.organization, self.pat, self.bearer = organization, pat, bearer
        self.errors: List[str] = []
        self.requests: List[str] = []  # "METHOD path?query", in order
        # Work items and Git.
        self.created: List[dict] = []
        self.files: Dict[Tuple[str, str, str, str], str] = {}  # (project, repository, commit, path) -> text
        self.commits: Dict[Tuple[str, str, str], dict] = {}  # (project, repository, commit) -> {"name", "email"}
        self.identities: Optional[Set[str]] = None  # when set, System.AssignedTo must be one of these
        # Builds of ``project`` and the reports attached to them.
        self.project = project
        self.project_id = project_id or str(uuid.uuid4())
        self.definition_id = definition_id
        self.builds: Dict[int, List[Tuple[str, bytes]]] = {}  # build id -> [(attachment name, content)]
        self.finished: Dict[int, datetime] = {}  # build id -> finish time (default: now)
        self.details: Dict[int, Dict[str, Any]] = {}  # build id -> fields overriding build_json's
        self.gets: List[int] = []  # Builds - Get requests, by build id
        self.require_min_time = True
        self.timeline, self.record = str(uuid.uuid4()), str(uuid.uuid4())
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/{organization}"

    def __enter__(self) -> "AzureDevOpsServer":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

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

    def attachments(self, build: int, kind: str) -> List[Dict[str, Any]]:
        if kind != REPORT_ATTACHMENT:
            return []
        base = f"{self.url}/{self.project}/_apis/build/builds/{build}/{self.timeline}/{self.record}/attachments"
        return [{"name": name, "_links": {"self": {"href": f"{base}/{kind}/{name}"}}}
                for name, _ in self.builds.get(build, [])]


def _handler_for(server: AzureDevOpsServer) -> type:
    org = server.organization

    class Handler(JsonHandler):
        def _fail(self, status: int, message: str) -> None:
            server.errors.append(message)
            self._send(status, {"message": message})

        def _raw(self, content: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def _authorized(self) -> bool:
            expected = {"Basic " + base64.b64encode(f":{server.pat}".encode()).decode()}
            if server.bearer:
                expected.add(f"Bearer {server.bearer}")
            if self.headers.get("Authorization") not in expected:
                self._fail(401, f"{self.command} {self.path}: Authorization is neither Basic with the PAT nor "
                                "the expected Bearer token")
                return False
            return True

        def _versioned(self) -> bool:
            """Calls through the azure-devops package name the API version in Accept."""
            accept = self.headers.get("Accept", "")
            if "api-version=" not in accept:
                self._fail(400, f"{self.command} {self.path}: no api-version in Accept ({accept!r})")
                return False
            return True

        def do_OPTIONS(self) -> None:  # noqa: N802 - http.server API
            server.requests.append(f"OPTIONS {self.path}")
            if not self._authorized():
                return
            if urlsplit(self.path).path.rstrip("/") != f"/{org}/_apis":
                return self._fail(404, f"OPTIONS {self.path}: unexpected path")
            self._send(200, {"count": len(LOCATIONS), "value": LOCATIONS})

        def do_GET(self) -> None:  # noqa: N802
            server.requests.append(f"GET {self.path}")
            if not self._authorized():
                return
            parts = urlsplit(self.path)
            git = re.fullmatch(rf"/{org}/([^/]+)/_apis/git/repositories/([^/]+)/(items|commits/([0-9a-f]{{40}}))",
                               unquote(parts.path))
            if git:
                return self._git(git, parse_qs(parts.query))
            if not self._versioned():
                return
            if parts.path.lower() == f"/{org}/_apis/resourceareas".lower():
                return self._send(200, {"count": 2, "value": [
                    {"id": WIT_AREA_ID, "name": "wit", "locationUrl": server.url + "/"},
                    {"id": BUILD_AREA_ID, "name": "build", "locationUrl": server.url + "/"}]})
            segments = [unquote(p) for p in parts.path.strip("/").split("/")]
            if segments[:1] != [org] or segments[2:4] != ["_apis", "build"]:
                return self._fail(404, f"GET {self.path}: unexpected path")
            if segments[1] != server.project:
                return self._send(404, {"message": f"TF200016: project {segments[1]!r} does not exist"})
            self._build(segments[4:], parse_qs(parts.query))

        def _build(self, rest: List[str], query: Dict[str, List[str]]) -> None:
            if rest == ["builds"]:
                since = None
                try:
                    since = datetime.fromisoformat(query["minTime"][0].replace("Z", "+00:00"))
                except (KeyError, ValueError):
                    if server.require_min_time:
                        server.errors.append(f"GET {self.path}: Builds - List without a valid minTime")
                if since is not None and since.tzinfo is None:
                    since = since.replace(tzinfo=timezone.utc)
                value = [server.build_json(b) for b in sorted(server.builds)
                         if since is None or server.finish_time(b) >= since]
                return self._send(200, {"count": len(value), "value": value})
            if len(rest) == 2 and rest[0] == "builds" and rest[1].isdigit():
                if int(rest[1]) not in server.builds:
                    return self._send(404, {"message": f"build {rest[1]} not found"})
                server.gets.append(int(rest[1]))
                return self._send(200, server.build_json(int(rest[1])))
            if len(rest) == 4 and rest[0] == "builds" and rest[2] == "attachments":
                value = server.attachments(int(rest[1]), rest[3])
                return self._send(200, {"count": len(value), "value": value})
            if len(rest) == 7 and rest[0] == "builds" and rest[4] == "attachments":
                build, timeline, record, kind, name = int(rest[1]), rest[2], rest[3], rest[5], rest[6]
                for attached, content in server.builds.get(build, []):
                    if (attached, timeline, record, kind) == (name, server.timeline, server.record,
                                                              REPORT_ATTACHMENT):
                        return self._raw(content)
            self._send(404, {"message": f"unknown path {self.path}"})

        def _git(self, match: "re.Match[str]", query: Dict[str, List[str]]) -> None:
            project, repository, kind, commit = match.groups()
            if query.get("api-version", [""])[0] != "7.1":
                return self._fail(400, f"GET {self.path}: api-version must be 7.1")
            if kind == "items":
                expected = {"path", "versionDescriptor.version", "versionDescriptor.versionType", "includeContent",
                            "api-version"}
                if set(query) != expected or query["versionDescriptor.versionType"] != ["commit"] \
                        or query["includeContent"] != ["true"] or not query["path"][0].startswith("/"):
                    return self._fail(400, f"GET {self.path}: not an Items - Get of a file at a commit")
                key = (project, repository, query["versionDescriptor.version"][0], query["path"][0][1:])
                if key not in server.files:
                    return self._send(404, {"message": f"TF401174: The item '{query['path'][0]}' could not be found"})
                return self._send(200, {"objectId": "0" * 40, "path": query["path"][0], "content": server.files[key]})
            author = server.commits.get((project, repository, commit))
            if author is None:
                return self._send(404, {"message": f"TF401175: The commit {commit} could not be found"})
            return self._send(200, {"commitId": commit, "author": {**author, "date": "2024-05-01T09:00:00Z"},
                                    "committer": {**author, "date": "2024-05-01T09:00:00Z"}, "comment": "a change"})

        def do_POST(self) -> None:  # noqa: N802
            server.requests.append(f"POST {self.path}")
            if not self._authorized():
                return
            parts = urlsplit(self.path)
            match = re.fullmatch(rf"/{org}/([^/]+)/_apis/wit/workitems/\$([^/]+)", unquote(parts.path),
                                 flags=re.IGNORECASE)
            if not match:
                return self._fail(400, f"POST {self.path}: not .../{{project}}/_apis/wit/workitems/${{type}}")
            accept = self.headers.get("Accept", "")
            version = parse_qs(parts.query).get("api-version", [""])[0] or accept.partition("api-version=")[2]
            if not version.startswith("7."):
                return self._fail(400, f"POST {self.path}: no api-version 7.x (Accept {accept!r})")
            if not self.headers.get("Content-Type", "").startswith("application/json-patch+json"):
                return self._fail(400, f"POST {self.path}: Content-Type must be application/json-patch+json")
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if not isinstance(body, list) or not all(
                isinstance(op, dict) and op.get("op") == "add" and isinstance(op.get("path"), str) and "value" in op
                for op in body
            ):
                return self._fail(400, f"POST {self.path}: the body is not a JSON Patch array of add operations")
            fields = {op["path"][len("/fields/"):]: op["value"] for op in body if op["path"].startswith("/fields/")}
            if "System.Title" not in fields:
                return self._fail(400, f"POST {self.path}: System.Title is required")
            assigned = fields.get("System.AssignedTo")
            if server.identities is not None and assigned and assigned not in server.identities:
                # What Azure DevOps answers for an identity the organisation does not know.
                return self._send(400, {"message": f"TF401320: Rule Error for field Assigned To. "
                                                   f"Error code: LimitedToValues, {assigned!r}",
                                        "typeKey": "RuleValidationException"})
            item_id = len(server.created) + 1
            server.created.append({
                "project": unquote(match.group(1)),
                "type": unquote(match.group(2)),
                "fields": fields,
                "relations": [op["value"] for op in body if op["path"] == "/relations/-"],
            })
            self._send(200, {"id": item_id, "rev": 1, "fields": fields,
                             "url": f"{server.url}/_apis/wit/workItems/{item_id}"})

    return Handler
