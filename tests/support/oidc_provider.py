"""Local OpenID Connect issuers for tests, on 127.0.0.1: the one place tests get signed tokens from.

``LocalIssuer`` is a token issuer: discovery documents and JWKS for any number of issuers under
path prefixes (``/ado/{org id}``, ``/github``, ``/entra/{tenant}/v2.0``), laid out the way the real
ones are, tokens minted by the test (``token``), and the GitHub runner's ID-token endpoint
(``ACTIONS_ID_TOKEN_REQUEST_URL``, ``runner_env``) for the collector. It records every request, and
can be made to fail (``down``) or hang (``hanging``).

``LocalOidcProvider`` is a sign-in provider for the web explorer's single sign-on; it follows OpenID
Connect Core 1.0 (authorization code flow, section 3.1), OpenID Connect
Discovery 1.0 and PKCE (RFC 7636), and checks every request the way a real provider does:

- authorize (3.1.2.1): response_type=code, a known client_id, the exact registered redirect_uri,
  scope with openid, state, nonce, code_challenge with code_challenge_method=S256; the person
  signs in on an HTML form (driven by Chromium or by a test), then is redirected back with
  ``code`` and ``state``;
- token (3.1.3.1, RFC 6749 4.1.3 and 2.3.1): POST form, client authentication with
  client_secret_basic or client_secret_post (only those the discovery document offers), a
  single-use code issued to that client for that redirect_uri, and a code_verifier whose S256
  challenge matches; the answer carries an RS256 id_token with iss, sub, aud, exp, iat, nonce.

Two layouts: ``generic`` (issuer ``{base}/oidc``) and ``entra`` (Microsoft Entra ID v2.0 paths:
``/{tenant}/v2.0/.well-known/openid-configuration``, ``/{tenant}/oauth2/v2.0/authorize``,
``/{tenant}/oauth2/v2.0/token``, ``/{tenant}/discovery/v2.0/keys``; issuer
``{base}/{tenant}/v2.0``; ``client_info`` in the token answer, as msal asks with client_info=1).
Every refusal is recorded in ``errors``; tests assert it stays empty on a good flow.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import ipaddress
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 section 4.1


@lru_cache(maxsize=None)
def new_key(name: str = "issuer"):
    """An RSA key per name, generated once per test session (generation takes up to a second)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str) -> Dict[str, Any]:
    return {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig", "alg": "RS256"}


# -- token issuer ------------------------------------------------------------------------------
DISCOVERY = "/.well-known/openid-configuration"
GITHUB_PREFIX = "/github"
RUNNER_TOKEN_PATH = "/_apis/distributedtask/hubs/Actions/plans/{plan}/jobs/{job}/idtoken"
RUNNER_API_VERSION = "2.0"


def github_claims(env: Mapping[str, str]) -> Dict[str, Any]:
    """The claims GitHub puts in a job's ID token (GitHub Docs, "OpenID Connect reference"), from the
    job's own GITHUB_* variables."""
    repository = env["GITHUB_REPOSITORY"]
    ref = env.get("GITHUB_REF", "")
    workflow_ref = env.get("GITHUB_WORKFLOW_REF", "")
    return {
        "sub": f"repo:{repository}:ref:{ref}", "ref": ref,
        "ref_type": "tag" if ref.startswith("refs/tags/") else "branch", "sha": env.get("GITHUB_SHA"),
        "repository": repository, "repository_id": env.get("GITHUB_REPOSITORY_ID"),
        "repository_owner": env.get("GITHUB_REPOSITORY_OWNER"),
        "repository_owner_id": env.get("GITHUB_REPOSITORY_OWNER_ID"), "repository_visibility": "private",
        "run_id": env.get("GITHUB_RUN_ID"), "run_number": env.get("GITHUB_RUN_NUMBER"),
        "run_attempt": env.get("GITHUB_RUN_ATTEMPT"), "actor": env.get("GITHUB_ACTOR"),
        "actor_id": env.get("GITHUB_ACTOR_ID"), "workflow": env.get("GITHUB_WORKFLOW"),
        "workflow_ref": workflow_ref, "workflow_sha": env.get("GITHUB_SHA"), "job_workflow_ref": workflow_ref,
        "job_workflow_sha": env.get("GITHUB_SHA"), "event_name": env.get("GITHUB_EVENT_NAME"),
        "runner_environment": env.get("RUNNER_ENVIRONMENT"), "head_ref": "", "base_ref": "",
    }


@dataclass
class RunnerRequest:
    """A request to the runner's ID-token endpoint, as the collector made it."""

    path: str
    query: Dict[str, List[str]]
    authorization: Optional[str]
    status: int


class LocalIssuer:
    """Start with ``with LocalIssuer() as issuer:``; ``issuer.base`` + a prefix is an issuer URL."""

    def __init__(self) -> None:
        self.key = new_key()
        self.kid = uuid.uuid4().hex
        self.requests: List[str] = []  # every path requested, with its query
        self.down = False  # answer 500
        # While set, requests hang (until released or the issuer stops), like an issuer that
        # accepts connections and never answers.
        self.hanging = False
        self.released = threading.Event()
        # GitHub Actions: what the next runner-issued tokens say about the job (github_claims).
        self.claims: Dict[str, Any] = {}
        self.lifetime_seconds = 600
        self.request_token = secrets.token_urlsafe(32)
        self.issued: List[str] = []  # tokens the runner endpoint handed out
        self.runner_requests: List[RunnerRequest] = []
        self._runner_path = RUNNER_TOKEN_PATH.format(plan=uuid.uuid4(), job=uuid.uuid4())
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _issuer_handler(self))
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalIssuer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def discovery(self, issuer: str) -> Dict[str, Any]:
        return {"issuer": issuer, "jwks_uri": issuer + "/keys", "response_types_supported": ["id_token"],
                "subject_types_supported": ["public", "pairwise"], "scopes_supported": ["openid"],
                "id_token_signing_alg_values_supported": ["RS256"]}

    def token(self, issuer: str, audience: str, claims: Dict[str, Any], *, lifetime: int = 600,
              key: Any = None, kid: Optional[str] = None, now: Optional[float] = None) -> str:
        now = time.time() if now is None else now
        payload = {"iss": issuer, "aud": audience, "iat": int(now), "nbf": int(now), "exp": int(now + lifetime),
                   "jti": uuid.uuid4().hex, **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid, "typ": "JWT"})

    # -- GitHub Actions ------------------------------------------------------------------------
    @property
    def github_issuer(self) -> str:
        """The ``iss`` of runner-issued tokens (IMAGETRAIL_GITHUB_ISSUER)."""
        return self.base + GITHUB_PREFIX

    @property
    def token_request_url(self) -> str:
        """What the runner puts in ACTIONS_ID_TOKEN_REQUEST_URL (already carries a query string)."""
        return f"{self.base}{self._runner_path}?api-version={RUNNER_API_VERSION}"

    def runner_env(self) -> Dict[str, str]:
        """The two variables a runner sets for a job with ``permissions: id-token: write``."""
        return {"ACTIONS_ID_TOKEN_REQUEST_URL": self.token_request_url,
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token}

    def token_requests(self) -> List[RunnerRequest]:
        return list(self.runner_requests)

    def runner_answer(self, query: Dict[str, List[str]], authorization: Optional[str]) -> Tuple[int, Dict[str, Any]]:
        """``GET <url>&audience=<aud>`` with the request token as Bearer -> ``{"value": "<jwt>"}``, as
        @actions/core's OidcClient reads it; without an audience GitHub uses the owner's URL."""
        if authorization != f"Bearer {self.request_token}":
            return 401, {"message": "the request token is missing or wrong"}
        if query.get("api-version") != [RUNNER_API_VERSION]:
            return 400, {"message": "api-version=2.0 is required"}
        audiences = query.get("audience") or []
        if len(audiences) > 1:
            return 400, {"message": "audience given more than once"}
        owner = self.claims.get("repository_owner") or ""
        audience = audiences[0] if audiences else f"https://github.com/{owner}"
        now = time.time()
        token = self.token(self.github_issuer, audience, {**self.claims, "nbf": int(now) - 5},
                           lifetime=self.lifetime_seconds, now=now)
        self.issued.append(token)
        return 200, {"count": 1, "value": token}


def _issuer_handler(issuer: LocalIssuer) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            issuer.requests.append(self.path)
            if issuer.hanging:
                issuer.released.wait(60)
                return
            if issuer.down:
                self.send_response(500)
                self.end_headers()
                return
            parts = urlsplit(self.path)
            if parts.path == issuer._runner_path:
                query = parse_qs(parts.query)
                status, body = issuer.runner_answer(query, self.headers.get("Authorization"))
                issuer.runner_requests.append(
                    RunnerRequest(parts.path, query, self.headers.get("Authorization"), status))
                return self._send(status, body)
            if parts.path.endswith(DISCOVERY):
                return self._send(200, issuer.discovery(issuer.base + parts.path[: -len(DISCOVERY)]))
            if parts.path.endswith("/keys"):
                return self._send(200, {"keys": [public_jwk(issuer.key, issuer.kid)]})
            self._send(404, {"message": f"no route {parts.path}"})

        def _send(self, status: int, body: Dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


# -- sign-in provider ----------------------------------------------------------------------------


@dataclass
class LocalCertificate:
    """A test CA and a server certificate for 127.0.0.1 it signed, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    spki_sha256: str  # base64 SHA-256 of the server key, for Chromium's --ignore-certificate-errors-spki-list


def make_certificate(directory: Path) -> LocalCertificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ImageTrail test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = LocalCertificate(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem", "")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    files.spki_sha256 = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return files


@dataclass
class Client:
    client_id: str
    secret: str
    redirect_uris: List[str]


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str
    challenge: str
    user: str
    issued: float
    used: bool = False


@dataclass
class LocalOidcProvider:
    """Start with ``with LocalOidcProvider(...) as provider:``; ``provider.issuer`` is the issuer URL."""

    users: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # username -> extra id_token claims
    layout: str = "generic"  # generic | entra
    tenant: str = "00000000-0000-4000-8000-000000000001"
    auth_methods: Tuple[str, ...] = ("client_secret_basic", "client_secret_post")
    certificate: Optional[LocalCertificate] = None  # https when given
    # Misbehaviour for tests of the relying party's checks: claims to override, another signing key.
    id_token_overrides: Dict[str, Any] = field(default_factory=dict)
    signing_key: Any = None
    clients: Dict[str, Client] = field(default_factory=dict)
    errors: List[str] = field(default_factory=list)
    token_requests: List[Dict[str, Any]] = field(default_factory=list)
    authorize_requests: List[Dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = new_key("oidc-provider")
        self.kid = secrets.token_hex(8)
        self._grants: Dict[str, Grant] = {}
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> "LocalOidcProvider":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        if self.certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.certificate.cert_file), str(self.certificate.key_file))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base(self) -> str:
        scheme = "https" if self.certificate else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def issuer(self) -> str:
        return f"{self.base}/{self.tenant}/v2.0" if self.layout == "entra" else f"{self.base}/oidc"

    def register(self, redirect_uri: str) -> Client:
        client = Client(secrets.token_hex(8), secrets.token_urlsafe(24), [redirect_uri])
        self.clients[client.client_id] = client
        return client

    # -- endpoints -----------------------------------------------------------------------
    def paths(self) -> Dict[str, str]:
        if self.layout == "entra":
            t = f"/{self.tenant}"
            return {"discovery": f"{t}/v2.0/.well-known/openid-configuration", "authorize": f"{t}/oauth2/v2.0/authorize",
                    "token": f"{t}/oauth2/v2.0/token", "jwks": f"{t}/discovery/v2.0/keys", "approve": f"{t}/approve"}
        return {"discovery": "/oidc/.well-known/openid-configuration", "authorize": "/oidc/authorize",
                "token": "/oidc/token", "jwks": "/oidc/jwks", "approve": "/oidc/approve"}

    def discovery(self) -> Dict[str, Any]:
        p = self.paths()
        return {
            "issuer": self.issuer, "authorization_endpoint": self.base + p["authorize"],
            "token_endpoint": self.base + p["token"], "jwks_uri": self.base + p["jwks"],
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid", "profile", "email"],
            "token_endpoint_auth_methods_supported": list(self.auth_methods),
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> Dict[str, Any]:
        return {"keys": [public_jwk(self.key, self.kid)]}

    def refuse(self, message: str) -> None:
        self.errors.append(message)

    def check_authorize(self, q: Dict[str, str]) -> Optional[str]:
        """None when the authorization request is acceptable, else why not (recorded)."""
        client = self.clients.get(q.get("client_id", ""))
        problems = [
            (q.get("response_type") != "code", "response_type must be code"),
            (client is None, "unknown client_id"),
            (client is not None and q.get("redirect_uri") not in client.redirect_uris, "redirect_uri not registered"),
            ("openid" not in q.get("scope", "").split(), "scope lacks openid"),
            (not q.get("state"), "state missing"),
            (not q.get("nonce"), "nonce missing"),
            (q.get("code_challenge_method") != "S256" or not q.get("code_challenge"), "PKCE S256 missing"),
        ]
        for failed, message in problems:
            if failed:
                self.refuse(f"authorize: {message}")
                return message
        return None

    def approve(self, q: Dict[str, str], user: str) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = Grant(q["client_id"], q["redirect_uri"], q["nonce"], q["code_challenge"], user,
                                       time.time())
        return code

    def client_from(self, form: Dict[str, str], authorization: Optional[str]) -> Optional[Client]:
        if authorization and authorization.startswith("Basic "):
            if "client_secret_basic" not in self.auth_methods:
                self.refuse("token: client_secret_basic is not offered")
                return None
            try:
                decoded = base64.b64decode(authorization[6:]).decode()
            except ValueError:
                return None
            client_id, secret = (unquote_plus(part) for part in decoded.partition(":")[::2])
        elif "client_secret" in form:
            if "client_secret_post" not in self.auth_methods:
                self.refuse("token: client_secret_post is not offered")
                return None
            client_id, secret = form.get("client_id", ""), form["client_secret"]
        else:
            self.refuse("token: no client authentication")
            return None
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, secret):
            self.refuse("token: client authentication failed")
            return None
        return client

    def exchange(self, form: Dict[str, str], authorization: Optional[str]) -> Tuple[int, Dict[str, Any]]:
        self.token_requests.append({**{k: v for k, v in form.items() if k != "client_secret"},
                                    "basic_auth": bool(authorization)})
        client = self.client_from(form, authorization)
        if client is None:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            self.refuse("token: grant_type must be authorization_code")
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self._grants.get(form.get("code", ""))
            replay = grant is not None and grant.used
            if grant is not None:
                grant.used = True
        if grant is None or replay or time.time() - grant.issued > 60 or grant.client_id != client.client_id:
            self.refuse("token: code unknown, used, expired or not this client's")
            return 400, {"error": "invalid_grant"}
        if form.get("redirect_uri") != grant.redirect_uri:
            self.refuse("token: redirect_uri differs from the authorization request's")
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not VERIFIER.match(verifier) or not secrets.compare_digest(challenge, grant.challenge):
            self.refuse("token: PKCE code_verifier does not match the code_challenge")
            return 400, {"error": "invalid_grant"}
        now = int(time.time())
        user = self.users.get(grant.user, {})
        sub = user.get("sub", "sub-" + hashlib.sha256(grant.user.encode()).hexdigest()[:16])
        claims = {"iss": self.issuer, "sub": sub, "aud": client.client_id, "iat": now, "exp": now + 300,
                  "auth_time": now, "nonce": grant.nonce, "preferred_username": grant.user,
                  **({"tid": self.tenant, "oid": sub, "ver": "2.0"} if self.layout == "entra" else {}),
                  **user, **self.id_token_overrides}
        id_token = jwt.encode(claims, self.signing_key or self.key, algorithm="RS256",
                              headers={"kid": self.kid, "typ": "JWT"})
        answer: Dict[str, Any] = {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer",
                                  "expires_in": 300, "id_token": id_token, "scope": form.get("scope", "openid")}
        if self.layout == "entra":
            info = json.dumps({"uid": sub, "utid": self.tenant}).encode()
            answer["client_info"] = base64.urlsafe_b64encode(info).rstrip(b"=").decode()
        return 200, answer


def _handler_for(provider: LocalOidcProvider) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json",
                  headers: Optional[Dict[str, str]] = None) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _form(self) -> Dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            if self.headers.get("Content-Type", "").split(";")[0] != "application/x-www-form-urlencoded":
                provider.refuse(f"{self.path}: body is not a form")
            return {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            parts = urlsplit(self.path)
            p = provider.paths()
            if parts.path == p["discovery"]:
                return self._send(200, provider.discovery())
            if parts.path == p["jwks"]:
                return self._send(200, provider.jwks())
            if parts.path == p["authorize"]:
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                provider.authorize_requests.append(query)
                problem = provider.check_authorize(query)
                if problem:
                    return self._send(400, f"<p id='error'>{html.escape(problem)}</p>", "text/html")
                hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                                 for k, v in query.items())
                page = (f"<!doctype html><title>Local provider sign-in</title><form method='post' "
                        f"action='{p['approve']}'>{hidden}<label for='username'>User</label>"
                        "<input id='username' name='username'><button id='approve'>Sign in</button></form>")
                return self._send(200, page, "text/html; charset=utf-8")
            self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            p = provider.paths()
            form = self._form()
            if parts.path == p["approve"]:
                user = form.pop("username", "")
                if provider.check_authorize(form) or user not in provider.users:
                    return self._send(403, "<p id='error'>unknown user</p>", "text/html")
                code = provider.approve(form, user)
                target = form["redirect_uri"] + "?" + urlencode({"code": code, "state": form["state"]})
                return self._send(302, "", "text/plain", {"Location": target})
            if parts.path == p["token"]:
                status, body = provider.exchange(form, self.headers.get("Authorization"))
                return self._send(status, body)
            self._send(404, {"error": "not_found"})

    return Handler
