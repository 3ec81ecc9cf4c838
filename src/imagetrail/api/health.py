"""Liveness (/healthz: the process answers) and readiness (/readyz: database reachable and migrated)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from imagetrail.store.migrate import current_revisions, head_revisions

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict:
    # On the event loop, not the thread pool: it answers even while every worker thread is busy.
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and migrated to head",
            responses={503: {"description": "Not ready; the body says why"}})
def readyz(request: Request) -> JSONResponse:
    try:
        with request.app.state.engine.connect() as connection:
            current = current_revisions(connection)
    except SQLAlchemyError as exc:
        return JSONResponse(status_code=503, headers={"Retry-After": "5"},
                            content={"status": "unavailable", "detail": f"database unreachable ({type(exc).__name__})"})
    heads = head_revisions()
    if current != heads:
        return JSONResponse(status_code=503, headers={"Retry-After": "5"},
                            content={"status": "migrating", "detail": f"schema at {current or 'nothing'}, "
                                     f"expected {heads}; run 'imagetrail db upgrade'"})
    return JSONResponse({"status": "ready", "revision": current})
