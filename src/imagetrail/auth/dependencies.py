"""FastAPI dependencies: who is calling, and may they call this route.

Every protected API route depends on ``authorized``: it resolves the caller and enforces the
route's row in ``route_scopes.ROUTE_SCOPES`` (the only place a scope is declared); the web
session dependency calls ``authorize`` the same way, so the web enforces exactly what the API
does. Routes then filter rows with ``principal.may_access(organization)``.

The caller is resolved with the async ``authenticate_request``: a recently verified API key is
answered from memory on the event loop, a database lookup runs in the thread pool, and a token is
verified on the event loop (a background thread fetches its issuer's keys; see ``tokens.IssuerKeys``).
"""

from __future__ import annotations

import logging
from typing import Optional

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from imagetrail.auth import Principal
from imagetrail.auth.api_keys import looks_like_api_key, principal_for_key
from imagetrail.auth.errors import forbidden, unauthorized
from imagetrail.auth.route_scopes import PUBLIC, SCOPE_ACTIONS, required_scope, route_key

log = logging.getLogger("imagetrail.auth")

# auto_error=False: we answer missing credentials ourselves, with WWW-Authenticate and a useful message.
bearer = HTTPBearer(auto_error=False, description="An Azure DevOps or GitHub job token, an Entra ID "
                    "access token, or an ImageTrail API key (imagetrail keys create).")


def _credential(credentials: Optional[HTTPAuthorizationCredentials]) -> str:
    if credentials is None or not credentials.credentials.strip():
        raise unauthorized("missing credentials: send 'Authorization: Bearer <job token or API key>'")
    return credentials.credentials.strip()


def _cached(request: Request, credential: str) -> Optional[Principal]:
    cache = getattr(request.app.state, "api_key_cache", None)
    return cache.get(credential) if cache is not None and looks_like_api_key(credential) else None


def authenticate(request: Request,
                 credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer)) -> Principal:
    """The caller (blocking: may query the database or fetch an issuer's keys)."""
    credential = _credential(credentials)
    if looks_like_api_key(credential):
        principal = _cached(request, credential)
        if principal is not None:
            return principal
        with request.app.state.sessions() as session:
            principal = principal_for_key(session, credential)
        if principal is None:
            raise unauthorized("the API key is unknown or revoked; create one with 'imagetrail keys create'")
        cache = getattr(request.app.state, "api_key_cache", None)
        if cache is not None:
            cache.put(credential, principal)
        return principal
    return request.app.state.token_verifier.verify(credential)


async def authenticate_request(request: Request,
                               credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer)) -> Principal:
    """``authenticate`` without blocking the event loop."""
    credential = _credential(credentials)
    if not looks_like_api_key(credential):
        # On the event loop: a request waiting for an issuer's keys holds no worker thread.
        return await request.app.state.token_verifier.verify_async(credential)
    principal = _cached(request, credential)
    if principal is not None:
        return principal
    return await run_in_threadpool(authenticate, request, credentials)


def authorize(request: Request, principal: Principal) -> Principal:
    """The principal, if the matched route's row in ROUTE_SCOPES lets it in; else 403."""
    route = request.scope.get("route")
    scope = required_scope(request.method, route)
    if scope is None:  # fail closed: a route nobody declared serves nobody
        log.error("route %s %s has no row in ROUTE_SCOPES; refused", *route_key(request.method, route))
        raise forbidden("this route is not open to any credential (it has no row in ROUTE_SCOPES)")
    if scope != PUBLIC and not principal.has_scope(scope):
        raise forbidden(f"this {principal.kind} credential may not {SCOPE_ACTIONS.get(scope, scope)} "
                        f"(it needs the {scope} scope)")
    return principal


async def authorized(request: Request,
                     credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer)) -> Principal:
    """The caller, allowed by this route's row in ROUTE_SCOPES (401 without a valid credential,
    403 without the scope)."""
    # Takes the credentials itself rather than Depends(authenticate_request): one dependency
    # level less on the ingest hot path (FastAPI's dependency solving is a third of its cost).
    return authorize(request, await authenticate_request(request, credentials))
