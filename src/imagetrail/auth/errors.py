"""Authentication failures, as HTTP answers that never echo the presented credential."""

from __future__ import annotations

from typing import Dict, Optional

from fastapi import HTTPException


def unauthorized(message: str) -> HTTPException:
    """401: no credential, or one that does not verify."""
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> HTTPException:
    """403: a valid credential that is not allowed to do this."""
    return HTTPException(status_code=403, detail=message)


def unavailable(message: str, retry_after: int, headers: Optional[Dict[str, str]] = None) -> HTTPException:
    """503: something we depend on (database, token issuer) cannot be reached right now."""
    return HTTPException(status_code=503, detail=message, headers={"Retry-After": str(retry_after), **(headers or {})})
