"""Browser sign-in for the web explorer: the same principals and checks as the API.

A browser either sends ``Authorization: Bearer …`` (like any API client) or signs in once, with
an API key or through single sign-on, and then holds a server-side session
(``web/session_store.py``): its cookie carries only a random session id (HttpOnly,
SameSite=Strict, Secure over https), never the key.

CSRF: state-changing forms of a session carry that session's random token (kept server-side).
The sign-in forms, used before any session exists, carry a token derived from a random
sign-in cookie (double submit), so another site cannot sign a browser in or out.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, urlsplit

from fastapi import HTTPException, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials

from imagetrail.auth import Principal
from imagetrail.auth import browser_sessions as session_store
from imagetrail.auth.dependencies import authenticate, authorize, bearer

SESSION_COOKIE = "imagetrail_session"
# Identifies a browser that is signing in: the sign-in forms' CSRF token and the pending single
# sign-on flow are bound to it. SameSite=Lax: the provider's redirect back is a cross-site navigation.
SIGN_IN_COOKIE = "imagetrail_sign_in"
_CSRF_CONTEXT = b"imagetrail-web-csrf-v1"
_SIGN_IN_CSRF_CONTEXT = b"imagetrail-web-sign-in-csrf-v1"


@dataclass(frozen=True)
class WebSession:
    principal: Principal
    csrf_token: str
    via_cookie: bool
    display_name: str = ""

    @property
    def label(self) -> str:
        orgs = self.principal.organizations
        scope = "all organisations" if orgs is None else ", ".join(sorted(orgs))
        who = self.display_name if self.principal.kind == session_store.KIND_SSO else self.principal.kind
        return f"{who} · {scope}"


def csrf_token_for(credential: str) -> str:
    """The form token of a client that authenticates with a header (stateless; needs the credential)."""
    return hmac.new(credential.encode("utf-8"), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def check_csrf(session: WebSession, token: Optional[str]) -> None:
    # bytes: compare_digest refuses str with non-ASCII characters (a 500 instead of a 403)
    if not token or not hmac.compare_digest(token.encode("utf-8", "replace"), session.csrf_token.encode()):
        raise HTTPException(
            status_code=403,
            detail="the form's CSRF token is missing or wrong: reload the page and submit the form again",
        )


def sign_in_csrf_token(browser_token: str) -> str:
    return hmac.new(browser_token.encode("utf-8"), _SIGN_IN_CSRF_CONTEXT, hashlib.sha256).hexdigest()


def sign_in_token_ok(request: Request, form_token: Optional[str]) -> bool:
    """Whether a sign-in form was submitted from a page of this site in this browser."""
    browser_token = request.cookies.get(SIGN_IN_COOKIE)
    if not browser_token or not form_token:
        return False
    return hmac.compare_digest(form_token, sign_in_csrf_token(browser_token))


def set_cookie(response: Response, request: Request, name: str, value: str, samesite: str = "strict") -> None:
    response.set_cookie(name, value, httponly=True, samesite=samesite, path="/",
                        secure=request.url.scheme == "https")


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax")


def safe_next(target: Optional[str]) -> str:
    """Only same-site paths are followed after sign-in (no open redirect)."""
    if not target or len(target) > 2048:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def login_redirect(request: Request, forget_session: bool = False) -> HTTPException:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    headers = {"Location": f"/login?next={quote(target, safe='')}"}
    if forget_session:  # an ended session's cookie is of no further use
        headers["Set-Cookie"] = f"{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=strict"
    # A 303 answer is followed by every browser; the router has no exception handler of its own.
    return HTTPException(status_code=303, detail="sign in first", headers=headers)


def web_reader(
    request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer)
) -> WebSession:
    """The principal for a page: from the Authorization header, else from the session cookie."""
    if credentials is not None:
        principal = authorize(request, authenticate(request, credentials))
        return WebSession(principal, csrf_token_for(credentials.credentials.strip()), via_cookie=False)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise login_redirect(request)
    state = request.app.state
    signed_in = session_store.resolve(state.sessions, state.settings, token)
    if signed_in is None:  # unknown, expired, signed out, or its API key revoked
        raise login_redirect(request, forget_session=True)
    principal = authorize(request, signed_in.principal)
    return WebSession(principal, signed_in.csrf_token, via_cookie=True, display_name=signed_in.display_name)
