"""A local stand-in for GitHub's OIDC provider and the runner's ID-token endpoint.

Serves, on 127.0.0.1:
- ``/.well-known/openid-configuration`` and ``/.well-known/jwks`` the way
  ``https://token.actions.githubusercontent.com`` does (RS256 keys with ``kid``);
- the ``ACTIONS_ID_TOKEN_REQUEST_URL`` endpoint a runner gives a job that has
  ``permissions: id-token: write``: ``GET <url>&audience=<aud>`` with
  ``Authorization: Bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>``, answering ``{"value": "<jwt>"}``
  (as read by @actions/core's OidcClient). Without an ``audience`` parameter GitHub
  uses the owner's URL as audience; so does this server.

Tokens carry GitHub's claim set (GitHub Docs, "OpenID Connect reference": iss, aud, sub,
repository, repository_owner, repository_id, run_id, run_attempt, workflow_ref, sha,
actor, job_workflow_ref, ...). Every request is recorded so tests can check what the
collector asked for.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

TOKEN_PATH = "/_apis/distributedtask/hubs/Actions/plans/{plan}/jobs/{job}/idtoken"
TOKEN_API_VERSION = "2.0"


def github_claims(env: Mapping[str, str]) -> Dict[str, Any]:
    """The claims GitHub puts in a job's ID token, derived from the job's own GITHUB_* variables."""
    repository = env["GITHUB_REPOSITORY"]
    ref = env.get("GITHUB_REF", "")
    ref_type = "tag" if ref.startswith("refs/tags/") else "branch"
    workflow_ref = env.get("GITHUB_WORKFLOW_REF", "")
    return {
        "sub": f"repo:{repository}:ref:{ref}",
        "ref": ref,
        "ref_type": ref_type,
        "sha": env.get("GITHUB_SHA"),
        "repository": repository,
        "repository_id": env.get("GITHUB_REPOSITORY_ID"),
        "repository_owner": env.get("GITHUB_REPOSITORY_OWNER"),
        "repository_owner_id": env.get("GITHUB_REPOSITORY_OWNER_ID"),
        "repository_visibility": "private",
        "run_id": env.get("GITHUB_RUN_ID"),
        "run_number": env.get("GITHUB_RUN_NUMBER"),
        "run_attempt": env.get("GITHUB_RUN_ATTEMPT"),
        "actor": env.get("GITHUB_ACTOR"),
        "actor_id": env.get("GITHUB_ACTOR_ID"),
        "workflow": env.get("GITHUB_WORKFLOW"),
        "workflow_ref": workflow_ref,
        "workflow_sha": env.get("GITHUB_SHA"),
        "job_workflow_ref": workflow_ref,
        "job_workflow_sha": env.get("GITHUB_SHA"),
        "event_name": env.get("GITHUB_EVENT_NAME"),
        "runner_environment": env.get("RUNNER_ENVIRONMENT"),
        "head_ref": "",
        "base_ref": "",
    }


@dataclass
class RecordedRequest:
    path: str
    query: Dict[str, List[str]]
    authorization: Optional[str]
    status: int


@dataclass
class LocalGitHubIssuer:
    """Start with ``with LocalGitHubIssuer() as issuer:``; ``issuer.url`` is the ``iss`` value."""

    claims: Dict[str, Any] = field(default_factory=dict)  # what the next issued tokens say about the job
    lifetime_seconds: int = 600
    request_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    requests: List[RecordedRequest] = field(default_factory=list)
    issued: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        self._plan, self._job = str(uuid.uuid4()), str(uuid.uuid4())
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> LocalGitHubIssuer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "the issuer is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_request_url(self) -> str:
        """What the runner puts in ACTIONS_ID_TOKEN_REQUEST_URL (already carries a query string)."""
        path = TOKEN_PATH.format(plan=self._plan, job=self._job)
        return f"{self.url}{path}?api-version={TOKEN_API_VERSION}"

    def runner_env(self) -> Dict[str, str]:
        """The two variables a runner sets for a job with ``permissions: id-token: write``."""
        return {"ACTIONS_ID_TOKEN_REQUEST_URL": self.token_request_url,
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token}

    # -- tokens --------------------------------------------------------------------------
    def jwks(self) -> Dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        public.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [public]}

    def issue(self, audience: str, **overrides: Any) -> str:
        now = int(time.time())
        payload = {**self.claims, "jti": str(uuid.uuid4()), "aud": audience, "iss": self.url,
                   "iat": now, "nbf": now - 5, "exp": now + self.lifetime_seconds, **overrides}
        token = jwt.encode(payload, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})
        self.issued.append(token)
        return token

    def token_requests(self) -> List[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/idtoken")]


def _handler_for(issuer: LocalGitHubIssuer) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: Dict[str, Any]) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            status, body = self._answer(parts.path, query)
            issuer.requests.append(RecordedRequest(parts.path, query, self.headers.get("Authorization"), status))
            self._send(status, body)

        def _answer(self, path: str, query: Dict[str, List[str]]) -> tuple:
            if path == "/.well-known/openid-configuration":
                return 200, {
                    "issuer": issuer.url,
                    "jwks_uri": f"{issuer.url}/.well-known/jwks",
                    "subject_types_supported": ["public", "pairwise"],
                    "response_types_supported": ["id_token"],
                    "claims_supported": sorted({"sub", "aud", "exp", "iat", "iss", "jti", "nbf", *issuer.claims}),
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid"],
                }
            if path == "/.well-known/jwks":
                return 200, issuer.jwks()
            if path == urlsplit(issuer.token_request_url).path:
                if self.headers.get("Authorization") != f"Bearer {issuer.request_token}":
                    return 401, {"message": "the request token is missing or wrong"}
                if query.get("api-version") != [TOKEN_API_VERSION]:
                    return 400, {"message": "api-version=2.0 is required"}
                audiences = query.get("audience") or []
                if len(audiences) > 1:
                    return 400, {"message": "audience given more than once"}
                owner = issuer.claims.get("repository_owner") or ""
                audience = audiences[0] if audiences else f"https://github.com/{owner}"
                return 200, {"count": 1, "value": issuer.issue(audience)}
            return 404, {"message": f"no route {path}"}

    return Handler
