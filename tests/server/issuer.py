"""A local OIDC issuer for tests: discovery document and JWKS over HTTP on 127.0.0.1, RS256 tokens.

One server hosts any number of issuers under path prefixes (``/ado/{org id}``, ``/github``,
``/entra/{tenant}/v2.0``), the way the real ones are laid out. It records every request so
tests can check that keys are fetched once and cached.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


@lru_cache(maxsize=None)
def new_key(name: str = "issuer"):
    """An RSA key per name, generated once per test session (generation takes up to a second)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class LocalIssuer:
    def __init__(self):
        self.key = new_key()
        self.kid = uuid.uuid4().hex
        self.requests: List[str] = []
        self.down = False
        # While set, requests hang (until released or the issuer stops), like an issuer that
        # accepts connections and never answers.
        self.hanging = False
        self.released = threading.Event()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                issuer.requests.append(self.path)
                if issuer.hanging:
                    issuer.released.wait(60)
                    return
                if issuer.down:
                    self.send_response(500)
                    self.end_headers()
                    return
                base = f"http://127.0.0.1:{issuer.port}"
                if self.path.endswith("/.well-known/openid-configuration"):
                    iss = base + self.path[: -len("/.well-known/openid-configuration")]
                    body: Dict[str, Any] = {"issuer": iss, "jwks_uri": iss + "/keys",
                                            "id_token_signing_alg_values_supported": ["RS256"]}
                elif self.path.endswith("/keys"):
                    jwk = json.loads(RSAAlgorithm.to_jwk(issuer.key.public_key()))
                    body = {"keys": [{**jwk, "kid": issuer.kid, "use": "sig", "alg": "RS256"}]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalIssuer":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def token(self, issuer: str, audience: str, claims: Dict[str, Any], *, lifetime: int = 600,
              key=None, kid: Optional[str] = None, now: Optional[float] = None) -> str:
        now = time.time() if now is None else now
        payload = {"iss": issuer, "aud": audience, "iat": int(now), "nbf": int(now), "exp": int(now + lifetime),
                   "jti": uuid.uuid4().hex, **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})
