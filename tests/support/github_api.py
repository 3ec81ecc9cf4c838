"""A local stand-in for the GitHub REST API endpoints ImageTrail calls, checking each request against
GitHub's documentation (REST API version 2022-11-28, docs.github.com/en/rest):

* Issues - "Create an issue": ``POST /repos/{owner}/{repo}/issues``, JSON body with ``title`` (required),
  optional ``body``, ``labels`` (strings), ``assignees`` (logins); 201 with the issue. Assignees without
  push access are dropped silently, as GitHub does.
* Issues - "List repository issues": ``GET /repos/{owner}/{repo}/issues`` with ``labels``, ``state``
  (open | closed | all), ``per_page`` (at most 100), ``page``.
* Search - "Search issues and pull requests": ``GET /search/issues?q=`` (``repo:owner/name``, ``label:``,
  ``in:body`` and quoted text are understood).
* Repositories - "Get repository content": ``GET /repos/{owner}/{repo}/contents/{path}?ref=`` (a file,
  base64-encoded).
* Commits - "Get a commit": ``GET /repos/{owner}/{repo}/commits/{ref}``.

Every request must carry ``Authorization: Bearer <token>`` (or ``token <token>``), ``Accept:
application/vnd.github+json`` and ``X-GitHub-Api-Version: 2022-11-28``. A request that breaks the
contract is recorded in ``errors`` and answered 400 (422 for a bad body, as GitHub answers); a wrong
token 401 "Bad credentials"; an unknown repository or path 404 "Not Found".
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Dict, List, Optional, Set
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.json_handler import JsonHandler

API_VERSION = "2022-11-28"
ISSUE_FIELDS = {"title", "body", "assignee", "milestone", "labels", "assignees", "type"}
LIST_PARAMETERS = {
    "milestone",
    "state",
    "assignee",
    "type",
    "creator",
    "mentioned",
    "labels",
    "sort",
    "direction",
    "since",
    "per_page",
    "page",
}


@dataclass
class Repo:
    collaborators: Set[str] = field(default_factory=set)  # logins with push access (may be assigned)
    files: Dict[tuple, bytes] = field(default_factory=dict)  # (ref, path) -> content
    commits: Dict[str, dict] = field(default_factory=dict)  # sha -> {"name", "email", "login", "type"}
    issues: List[dict] = field(default_factory=list)


class GitHubApi:
    def __init__(self, token: str):
        self.token = token
        self.repos: Dict[str, Repo] = {}
        self.errors: List[str] = []
        self.requests: List[str] = []
        self.fail_with: Optional[int] = None  # answer every call with this status (e.g. 403)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def repo(self, full_name: str) -> Repo:
        return self.repos.setdefault(full_name.lower(), Repo())

    @property
    def created(self) -> List[dict]:
        return [issue for repo in self.repos.values() for issue in repo.issues]

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def _issue_json(self, full_name: str, issue: dict) -> dict:
        return {
            "id": 1000 + issue["number"],
            "number": issue["number"],
            "state": issue.get("state", "open"),
            "title": issue["title"],
            "body": issue.get("body"),
            "labels": [{"name": name} for name in issue.get("labels", [])],
            "assignees": [{"login": login} for login in issue.get("assignees", [])],
            "url": f"{self.url}/repos/{full_name}/issues/{issue['number']}",
            "html_url": f"https://github.com/{full_name}/issues/{issue['number']}",
        }

    def _handler(self):
        api = self

        class Handler(JsonHandler):
            def _fail(self, message, status=400):
                api.errors.append(message)
                self._send(status, {"message": message})

            def _checked(self) -> bool:
                api.requests.append(f"{self.command} {self.path}")
                authorization = self.headers.get("Authorization", "")
                scheme, _, token = authorization.partition(" ")
                if scheme.lower() not in ("bearer", "token") or token != api.token:
                    self._send(401, {"message": "Bad credentials"})
                    return False
                if self.headers.get("Accept", "") != "application/vnd.github+json":
                    self._fail(f"{self.command} {self.path}: Accept is not application/vnd.github+json")
                    return False
                if self.headers.get("X-GitHub-Api-Version") != API_VERSION:
                    self._fail(f"{self.command} {self.path}: X-GitHub-Api-Version is not {API_VERSION}")
                    return False
                if api.fail_with:
                    self._send(api.fail_with, {"message": "Resource not accessible by integration"})
                    return False
                return True

            def _repo(self, owner, name) -> Optional[Repo]:
                repo = api.repos.get(f"{owner}/{name}".lower())
                if repo is None:
                    self._send(404, {"message": "Not Found"})
                return repo

            def do_GET(self):
                if not self._checked():
                    return
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                query = parse_qs(parts.query)
                if path == "/search/issues":
                    return self._search(query)
                match = re.fullmatch(r"/repos/([^/]+)/([^/]+)/(issues|contents|commits)(?:/(.+))?", path)
                if not match:
                    return self._fail(f"GET {self.path}: not a documented endpoint", 404)
                owner, name, kind, rest = match.groups()
                repo = self._repo(owner, name)
                if repo is None:
                    return
                if kind == "issues" and rest is None:
                    return self._list(f"{owner}/{name}", repo, query)
                if kind == "contents" and rest:
                    return self._contents(repo, rest, query)
                if kind == "commits" and rest and "/" not in rest:
                    return self._commit(repo, rest)
                return self._fail(f"GET {self.path}: not a documented endpoint", 404)

            def _list(self, full_name, repo, query):
                unknown = set(query) - LIST_PARAMETERS
                if unknown:
                    return self._fail(f"GET issues: undocumented parameters {sorted(unknown)}")
                state = query.get("state", ["open"])[0]
                if state not in ("open", "closed", "all"):
                    return self._fail(f"GET issues: state must be open, closed or all, not {state!r}", 422)
                per_page = int(query.get("per_page", ["30"])[0])
                page = int(query.get("page", ["1"])[0])
                if not 1 <= per_page <= 100 or page < 1:
                    return self._fail("GET issues: per_page must be 1..100 and page at least 1", 422)
                wanted = {label for label in query.get("labels", [""])[0].split(",") if label}
                issues = [
                    i
                    for i in repo.issues
                    if wanted <= set(i.get("labels", []))
                    and (state == "all" or i.get("state", "open") == state)
                ]
                chosen = issues[(page - 1) * per_page : page * per_page]
                self._send(200, [api._issue_json(full_name, i) for i in chosen])

            def _search(self, query):
                q = query.get("q", [""])[0]
                if not q:
                    return self._fail("GET /search/issues: q is required", 422)
                terms = shlex.split(q)
                items = []
                for full_name, repo in api.repos.items():
                    for issue in repo.issues:
                        if all(self._term(t, full_name, issue) for t in terms):
                            items.append(api._issue_json(full_name, issue))
                self._send(200, {"total_count": len(items), "incomplete_results": False, "items": items})

            @staticmethod
            def _term(term, full_name, issue) -> bool:
                key, colon, value = term.partition(":")
                if colon and key == "repo":
                    return value.lower() == full_name
                if colon and key == "label":
                    return value in issue.get("labels", [])
                if colon and key in ("in", "is", "type"):
                    return True
                return term in (issue.get("body") or "") or term in issue["title"]

            def _contents(self, repo, path, query):
                ref = query.get("ref", ["HEAD"])[0]
                data = repo.files.get((ref, path))
                if data is None:
                    return self._send(404, {"message": "Not Found"})
                self._send(
                    200,
                    {
                        "type": "file",
                        "encoding": "base64",
                        "size": len(data),
                        "name": path.rsplit("/", 1)[-1],
                        "path": path,
                        "sha": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                        "content": base64.encodebytes(data).decode(),
                    },
                )

            def _commit(self, repo, ref):
                commit = repo.commits.get(ref)
                if commit is None:
                    return self._send(422, {"message": f"No commit found for SHA: {ref}"})
                author = (
                    {"login": commit["login"], "type": commit.get("type", "User")}
                    if commit.get("login")
                    else None
                )
                self._send(
                    200,
                    {
                        "sha": ref,
                        "commit": {
                            "author": {
                                "name": commit["name"],
                                "email": commit["email"],
                                "date": "2024-05-01T09:00:00Z",
                            },
                            "committer": {
                                "name": "GitHub",
                                "email": "noreply@github.com",
                                "date": "2024-05-01T09:00:00Z",
                            },
                            "message": "a change",
                        },
                        "author": author,
                    },
                )

            def do_POST(self):
                if not self._checked():
                    return
                match = re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues", unquote(urlsplit(self.path).path))
                if not match:
                    return self._fail(f"POST {self.path}: not a documented endpoint", 404)
                if not self.headers.get("Content-Type", "").startswith("application/json"):
                    return self._fail(f"POST {self.path}: Content-Type must be application/json")
                repo = self._repo(*match.groups())
                if repo is None:
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                except ValueError:
                    return self._fail(f"POST {self.path}: the body is not JSON")
                if not isinstance(body, dict) or set(body) - ISSUE_FIELDS:
                    return self._fail(
                        f"POST {self.path}: undocumented fields {sorted(set(body) - ISSUE_FIELDS)}", 422
                    )
                if not isinstance(body.get("title"), (str, int)) or not str(body["title"]).strip():
                    return self._fail(f"POST {self.path}: title is required", 422)
                for name in ("labels", "assignees"):
                    value = body.get(name, [])
                    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                        return self._fail(f"POST {self.path}: {name} must be an array of strings", 422)
                if body.get("body") is not None and not isinstance(body["body"], str):
                    return self._fail(f"POST {self.path}: body must be a string", 422)
                full_name = "/".join(match.groups()).lower()
                issue = {
                    "number": len(repo.issues) + 1,
                    "title": str(body["title"]),
                    "body": body.get("body"),
                    "labels": body.get("labels", []),
                    # Only users with push access can be assigned; others are dropped silently.
                    "assignees": [a for a in body.get("assignees", []) if a.lower() in repo.collaborators],
                    "requested_assignees": body.get("assignees", []),
                }
                repo.issues.append(issue)
                self._send(201, api._issue_json(full_name, issue))

        return Handler
