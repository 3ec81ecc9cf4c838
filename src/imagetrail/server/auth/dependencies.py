"""FastAPI dependencies: who is calling, and may they ingest / read.

Routes use ``Depends(require_ingest)`` or ``Depends(require_reader)`` and then filter rows
with ``principal.may_access(organization)``.
"""

from __future__ import annotations

from typing import Optional

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from imagetrail.server.auth import SCOPE_INGEST, SCOPE_READ, Principal
from imagetrail.server.auth.api_keys import looks_like_api_key, principal_for_key
from imagetrail.server.auth.errors import forbidden, unauthorized

# auto_error=False: we answer missing credentials ourselves, with WWW-Authenticate and a useful message.
bearer = HTTPBearer(auto_error=False, description="An Azure DevOps or GitHub job token, an Entra ID "
                    "access token, or an ImageTrail API key (imagetrail keys create).")


def authenticate(request: Request,
                 credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer)) -> Principal:
    if credentials is None or not credentials.credentials.strip():
        raise unauthorized("missing credentials: send 'Authorization: Bearer <job token or API key>'")
    credential = credentials.credentials.strip()
    if looks_like_api_key(credential):
        with request.app.state.sessions() as session:
            principal = principal_for_key(session, credential)
        if principal is None:
            raise unauthorized("the API key is unknown or revoked; create one with 'imagetrail keys create'")
        return principal
    return request.app.state.token_verifier.verify(credential)


def require_ingest(principal: Principal = Depends(authenticate)) -> Principal:
    if not principal.has_scope(SCOPE_INGEST):
        raise forbidden("this credential may not submit reports (it needs the ingest scope)")
    return principal


def require_reader(principal: Principal = Depends(authenticate)) -> Principal:
    if not principal.has_scope(SCOPE_READ):
        raise forbidden("this credential may not read (it needs the read scope)")
    return principal
