"""Read endpoints: the trail of a digest or reference, and image listings."""

from __future__ import annotations

from typing import List, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.auth.dependencies import authorized
from imagetrail.queries.registry_trail import with_registry
from imagetrail.queries.resolve import ResolveError, resolve_target
from imagetrail.queries.trace import (
    DEFAULT_PAGE,
    MAX_LIST,
    MAX_PUSHES,
    TraceQueryError,
    list_images,
    trail_for_digest,
    trail_for_reference,
)
from imagetrail.views.trace import ImageRow, TraceAnswer

router = APIRouter(tags=["trace"])


def _read_session(request: Request) -> Session:
    """A session for the trace's few reads. On PostgreSQL without a transaction (autocommit, set client
    side): no BEGIN and ROLLBACK round trips around two or three SELECTs, which read committed rows
    anyway. SQLite keeps its sessions (its engine begins every transaction itself)."""
    sessions = request.app.state.sessions
    engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        return sessions()
    # one option engine (same pool) per app, not one per request
    autocommit = getattr(request.app.state, "trace_autocommit_engine", None)
    if autocommit is None:
        autocommit = request.app.state.trace_autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return Session(bind=autocommit, expire_on_commit=False)


IMAGE_ROWS = TypeAdapter(List[ImageRow])


def _json(payload: bytes) -> Response:
    # Already a validated model: serialised once by pydantic-core, instead of FastAPI checking
    # it against response_model again (a trail page has up to 500 pushes).
    return Response(payload, media_type="application/json")
ERRORS = {401: {"description": "No or invalid credentials"}, 403: {"description": "Not a reader"},
          422: {"description": "The digest, reference, limit or page cursor (before) cannot be used"},
          503: {"description": "The database is unavailable"}}


LIMIT = Query(DEFAULT_PAGE, ge=1, le=MAX_PUSHES, description=f"pushes per page (1-{MAX_PUSHES})")
BEFORE = Query(None, max_length=100, description="page cursor: the 'next' value of the previous page "
                                                 "(pushes older than it)")


@router.get("/v1/images/{digest}/trail", response_model=TraceAnswer, responses=ERRORS,
            summary="Which runs pushed this image (following index <-> platform manifests), newest first, "
                    "one page at a time")
def image_trail(digest: str, request: Request, limit: int = LIMIT, before: Optional[str] = BEFORE,
                principal: Principal = Depends(authorized)) -> Response:
    with _read_session(request) as session:
        try:
            digest = resolve_target(session, principal, digest).value  # a short digest the CLI printed
            trail = trail_for_digest(session, digest, principal, limit=limit, before=before)
            return _json(with_registry(session, trail, principal, request.app.state.settings).model_dump_json())
        except (TraceQueryError, ResolveError) as exc:
            raise HTTPException(422, str(exc)) from None


@router.get("/v1/trail", response_model=TraceAnswer, responses=ERRORS,
            summary="The pushes of an image reference (registry/repository:tag), newest first, one page at a time")
def reference_trail(request: Request, reference: str = Query(..., min_length=1, max_length=1100),
                    limit: int = LIMIT, before: Optional[str] = BEFORE,
                    principal: Principal = Depends(authorized)) -> Response:
    with _read_session(request) as session:
        try:
            target = resolve_target(session, principal, reference)  # short digest, or no registry named
            if target.kind == "digest":
                trail = trail_for_digest(session, target.value, principal, limit=limit, before=before)
            else:
                trail = trail_for_reference(session, target.value, principal, limit=limit, before=before)
            return _json(with_registry(session, trail, principal, request.app.state.settings,
                                       reference=target.value if target.kind == "reference" else None
                                       ).model_dump_json())
        except (TraceQueryError, ResolveError) as exc:
            raise HTTPException(422, str(exc)) from None


@router.get("/v1/images", response_model=List[ImageRow], responses=ERRORS,
            summary="Images pushed to a repository, by a pipeline or by a run, newest first")
def images(
    request: Request,
    repository: Optional[str] = Query(None, max_length=1100, description="registry/repository[:tag]"),
    organization: Optional[str] = Query(None, max_length=255),
    project: Optional[str] = Query(None, max_length=255),
    pipeline: Optional[str] = Query(None, max_length=512, description="pipeline id or name"),
    run: Optional[str] = Query(None, max_length=255, description="run id (Azure DevOps build id, GitHub run id)"),
    limit: int = Query(100, ge=1, le=MAX_LIST),
    offset: int = Query(0, ge=0, le=1_000_000),
    principal: Principal = Depends(authorized),
) -> Response:
    with _read_session(request) as session:
        try:
            return _json(IMAGE_ROWS.dump_json(list_images(
                session, principal, repository=repository, organization=organization, project=project,
                pipeline=pipeline, run=run, limit=limit, offset=offset)))
        except TraceQueryError as exc:
            raise HTTPException(422, str(exc)) from None
