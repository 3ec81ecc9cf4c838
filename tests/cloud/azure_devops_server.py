"""A local stand-in for the Azure DevOps REST endpoints the azure-devops package calls to create work items.

It answers what the package asks for, in order: ``OPTIONS {org}/_apis`` (resource locations),
``GET {org}/_apis/ResourceAreas`` (where each service lives) and ``POST {org}/{project}/_apis/wit/
workitems/${type}`` ("Work Items - Create", REST API 7.1); for owners, Git "Items - Get" ``GET {org}/
{project}/_apis/git/repositories/{repo}/items?path=&versionDescriptor.version=&versionDescriptor.
versionType=commit&includeContent=true`` and Git "Commits - Get" ``GET {org}/{project}/_apis/git/
repositories/{repo}/commits/{commitId}`` (from ``files`` and ``commits``); and CHECKS each request against the
documented API: Basic auth with the PAT, ``Content-Type: application/json-patch+json``, an
``api-version``, and a JSON Patch array of add operations. A request that breaks the contract is
recorded in ``errors`` and answered with 400.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import ThreadingHTTPServer
from typing import List, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.json_handler import JsonHandler

WIT_AREA_ID = "5264459e-e5e0-4bd8-b118-0985e68a4ec5"
RESOURCE_AREAS_ID = "e81700f7-3be2-46de-8624-2eb35882fcaa"
WORK_ITEMS_ID = "62d3d110-0047-428c-ad3c-4fe872c91c74"


class AzureDevOpsServer:
    def __init__(self, organization: str, pat: str):
        self.organization = organization
        self.pat = pat
        self.created: List[dict] = []
        self.errors: List[str] = []
        self.requests: List[str] = []
        self.files: dict = {}  # (project, repository, commit, path) -> text
        self.commits: dict = {}  # (project, repository, commit) -> {"name", "email"}
        self.identities: Optional[set] = None  # when set, System.AssignedTo must be one of these
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/{organization}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def _locations(self):
        common = {"resourceVersion": 1, "minVersion": 1.0, "maxVersion": 7.1, "releasedVersion": "7.0"}
        return {
            "count": 2,
            "value": [
                {
                    "id": RESOURCE_AREAS_ID,
                    "area": "Location",
                    "resourceName": "ResourceAreas",
                    "routeTemplate": "_apis/{resource}/{areaId}",
                    **common,
                },
                {
                    "id": WORK_ITEMS_ID,
                    "area": "wit",
                    "resourceName": "workItems",
                    "routeTemplate": "{project}/_apis/{area}/{resource}/${type}",
                    **common,
                },
            ],
        }

    def _handler(self):
        server = self

        class Handler(JsonHandler):
            def _fail(self, message):
                server.errors.append(message)
                self._send(400, {"message": message})

            def _authorized(self):
                expected = "Basic " + base64.b64encode(f":{server.pat}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._fail(f"{self.command} {self.path}: Authorization is not Basic with the PAT")
                    return False
                return True

            def do_OPTIONS(self):
                server.requests.append(f"OPTIONS {self.path}")
                if not self._authorized():
                    return
                if urlsplit(self.path).path.rstrip("/") != f"/{server.organization}/_apis":
                    return self._fail(f"OPTIONS {self.path}: unexpected path")
                self._send(200, server._locations())

            def do_GET(self):
                server.requests.append(f"GET {self.path}")
                if not self._authorized():
                    return
                parts = urlsplit(self.path)
                git = re.fullmatch(
                    rf"/{server.organization}/([^/]+)/_apis/git/repositories/([^/]+)/(items|commits/([0-9a-f]{{40}}))",
                    unquote(parts.path),
                )
                if git:
                    return self._git(git, parse_qs(parts.query))
                if parts.path.lower() != f"/{server.organization}/_apis/resourceareas":
                    return self._fail(f"GET {self.path}: unexpected path")
                self._send(
                    200,
                    {
                        "count": 1,
                        "value": [{"id": WIT_AREA_ID, "name": "wit", "locationUrl": server.url + "/"}],
                    },
                )

            def _git(self, match, query):
                project, repository, kind, commit = match.groups()
                if query.get("api-version", [""])[0] != "7.1":
                    return self._fail(f"GET {self.path}: api-version must be 7.1")
                if kind == "items":
                    expected = {"path", "versionDescriptor.version", "versionDescriptor.versionType", "includeContent",
                                "api-version"}
                    if set(query) != expected or query["versionDescriptor.versionType"] != ["commit"] \
                            or query["includeContent"] != ["true"] or not query["path"][0].startswith("/"):
                        return self._fail(f"GET {self.path}: not an Items - Get of a file at a commit")
                    key = (project, repository, query["versionDescriptor.version"][0], query["path"][0][1:])
                    if key not in server.files:
                        return self._send(404, {"message": f"TF401174: The item '{query['path'][0]}' could not be found"})
                    return self._send(200, {"objectId": "0" * 40, "path": query["path"][0], "content": server.files[key]})
                author = server.commits.get((project, repository, commit))
                if author is None:
                    return self._send(404, {"message": f"TF401175: The commit {commit} could not be found"})
                return self._send(200, {"commitId": commit, "author": {**author, "date": "2024-05-01T09:00:00Z"},
                                        "committer": {**author, "date": "2024-05-01T09:00:00Z"}, "comment": "a change"})

            def do_POST(self):
                server.requests.append(f"POST {self.path}")
                if not self._authorized():
                    return
                parts = urlsplit(self.path)
                match = re.fullmatch(
                    rf"/{server.organization}/([^/]+)/_apis/wit/workitems/\$([^/]+)",
                    unquote(parts.path),
                    flags=re.IGNORECASE,
                )
                if not match:
                    return self._fail(f"POST {self.path}: not .../{{project}}/_apis/wit/workitems/${{type}}")
                accept = self.headers.get("Accept", "")
                version = (
                    parse_qs(parts.query).get("api-version", [""])[0] or accept.partition("api-version=")[2]
                )
                if not version.startswith("7."):
                    return self._fail(f"POST {self.path}: no api-version 7.x (Accept {accept!r})")
                if not self.headers.get("Content-Type", "").startswith("application/json-patch+json"):
                    return self._fail(f"POST {self.path}: Content-Type must be application/json-patch+json")
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if not isinstance(body, list) or not all(
                    isinstance(op, dict)
                    and op.get("op") == "add"
                    and isinstance(op.get("path"), str)
                    and "value" in op
                    for op in body
                ):
                    return self._fail(
                        f"POST {self.path}: the body is not a JSON Patch array of add operations"
                    )
                fields = {
                    op["path"][len("/fields/") :]: op["value"]
                    for op in body
                    if op["path"].startswith("/fields/")
                }
                if "System.Title" not in fields:
                    return self._fail(f"POST {self.path}: System.Title is required")
                assigned = fields.get("System.AssignedTo")
                if server.identities is not None and assigned and assigned not in server.identities:
                    # What Azure DevOps answers for an identity the organisation does not know.
                    return self._send(400, {"message": f"TF401320: Rule Error for field Assigned To. "
                                                       f"Error code: LimitedToValues, {assigned!r}",
                                            "typeKey": "RuleValidationException"})
                item_id = len(server.created) + 1
                server.created.append(
                    {
                        "project": unquote(match.group(1)),
                        "type": unquote(match.group(2)),
                        "fields": fields,
                        "relations": [op["value"] for op in body if op["path"] == "/relations/-"],
                    }
                )
                self._send(
                    200,
                    {
                        "id": item_id,
                        "rev": 1,
                        "fields": fields,
                        "url": f"{server.url}/_apis/wit/workItems/{item_id}",
                    },
                )

        return Handler
