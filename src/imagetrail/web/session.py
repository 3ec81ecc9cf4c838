"""Browser sign-in for the web explorer: the same credentials and checks as the API.

A browser either sends ``Authorization: Bearer …`` (like any API client) or signs in once
with an API key through the login form; the key is then kept in an HttpOnly,
SameSite=Strict cookie and checked on every request by the API's own
``authenticate`` / ``authorize`` functions (the route's row in ROUTE_SCOPES), so revoking the key
ends the session and the web enforces exactly what the API does.

State-changing forms carry a CSRF token derived from the credential with HMAC: it is
stateless (works across processes and restarts), cannot be computed without the key, and
SameSite=Strict already keeps other sites' requests from carrying the cookie at all.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, urlsplit

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from imagetrail.server.auth import Principal
from imagetrail.server.auth.dependencies import authenticate, authorize, bearer

SESSION_COOKIE = "imagetrail_session"
_CSRF_CONTEXT = b"imagetrail-web-csrf-v1"


@dataclass(frozen=True)
class WebSession:
    principal: Principal
    credential: str
    via_cookie: bool

    @property
    def csrf_token(self) -> str:
        return csrf_token_for(self.credential)

    @property
    def label(self) -> str:
        orgs = self.principal.organizations
        scope = "all organisations" if orgs is None else ", ".join(sorted(orgs))
        return f"{self.principal.kind} · {scope}"


def csrf_token_for(credential: str) -> str:
    return hmac.new(credential.encode("utf-8"), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def check_csrf(session: WebSession, token: Optional[str]) -> None:
    # bytes: compare_digest refuses str with non-ASCII characters (a 500 instead of a 403)
    if not token or not hmac.compare_digest(token.encode("utf-8", "replace"), session.csrf_token.encode()):
        raise HTTPException(
            status_code=403,
            detail="the form's CSRF token is missing or wrong: reload the page and submit the form again",
        )


def safe_next(target: Optional[str]) -> str:
    """Only same-site paths are followed after sign-in (no open redirect)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def login_redirect(request: Request) -> HTTPException:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    # A 303 answer is followed by every browser; the router has no exception handler of its own.
    return HTTPException(
        status_code=303, detail="sign in first", headers={"Location": f"/login?next={quote(target, safe='')}"}
    )


def web_reader(
    request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer)
) -> WebSession:
    """The principal for a page: from the Authorization header, else from the session cookie."""
    via_cookie = False
    if credentials is None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise login_redirect(request)
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=cookie)
        via_cookie = True
    try:
        principal = authorize(request, authenticate(request, credentials))
    except HTTPException as exc:
        if exc.status_code == 401 and via_cookie:
            raise login_redirect(request) from None  # e.g. the key was revoked since sign-in
        raise
    return WebSession(principal=principal, credential=credentials.credentials.strip(), via_cookie=via_cookie)
