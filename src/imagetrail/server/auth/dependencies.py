"""FastAPI dependencies: who is calling, and may they ingest / read.

Routes use ``Depends(require_ingest)`` or ``Depends(require_reader)`` and then filter rows
with ``principal.may_access(organization)``. Both resolve the caller with the async
``authenticate_request``: a recently verified API key is answered from memory on the event
loop, a database lookup runs in the thread pool, and a token is verified on the event loop (a
background thread fetches its issuer's keys; see ``tokens.IssuerKeys``).
"""

from __future__ import annotations

from typing import Optional

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from imagetrail.server.auth import SCOPE_INGEST, SCOPE_READ, Principal
from imagetrail.server.auth.api_keys import looks_like_api_key, principal_for_key
from imagetrail.server.auth.errors import forbidden, unauthorized

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


async def require_ingest(request: Request,
                         credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer)) -> Principal:
    # Takes the credentials itself rather than Depends(authenticate_request): one dependency
    # level less on the ingest hot path (FastAPI's dependency solving is a third of its cost).
    principal = await authenticate_request(request, credentials)
    if not principal.has_scope(SCOPE_INGEST):
        raise forbidden("this credential may not submit reports (it needs the ingest scope)")
    return principal


def require_reader(principal: Principal = Depends(authenticate_request)) -> Principal:
    if not principal.has_scope(SCOPE_READ):
        raise forbidden("this credential may not read (it needs the read scope)")
    return principal
