"""Registry side API: push notifications from registries (Distribution, ACR, Event Grid, Harbor), and the
pushes nothing explains."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from imagetrail.api.request_json import json_body
from imagetrail.auth import Principal
from imagetrail.auth.dependencies import authorized
from imagetrail.parsers.registry_events import DISTRIBUTION_MEDIA_TYPE, EventInvalid, parse
from imagetrail.queries.untraced import MAX_PAGE_SIZE, untraced_pushes
from imagetrail.queries.visibility import visible_registries
from imagetrail.views.registry import UntracedPage

router = APIRouter(tags=["registry"])


class RegistryEventsAnswer(BaseModel):
    format: str  # distribution | acr | event-grid | harbor
    received: int  # manifest pushes in the body
    stored: int  # new ones
    duplicates: int  # already stored (same registry and event id)
    ignored: int  # pulls, deletes, blob uploads, other event types
    validationResponse: Optional[str] = None  # Event Grid subscription validation handshake


_BODY = {"required": True, "content": {
    media: {"schema": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}
    for media in (DISTRIBUTION_MEDIA_TYPE, "application/json", "application/cloudevents+json",
                  "application/cloudevents-batch+json")}}


@router.post(
    "/v1/registry-events",
    summary="Push notifications from a registry: Distribution envelopes, ACR webhooks, Event Grid, Harbor",
    response_model=RegistryEventsAnswer,
    openapi_extra={"requestBody": _BODY},
    responses={
        400: {"description": "The body is not JSON"},
        401: {"description": "No or invalid credentials"},
        403: {"description": "The credential lacks the registry scope, or may not speak for this registry"},
        413: {"description": "The body exceeds IMAGETRAIL_MAX_REGISTRY_EVENT_BYTES"},
        422: {"description": "Not a registry notification; the detail names the field"},
        503: {"description": "The database is unavailable; retry after Retry-After seconds"},
    },
)
async def post_registry_events(request: Request, principal: Principal = Depends(authorized)) -> JSONResponse:
    settings = request.app.state.settings
    body = await json_body(request)
    try:
        parsed = parse(body)
    except EventInvalid as exc:
        raise HTTPException(422, str(exc)) from None
    # A key of one organisation speaks only for the registries mapped to it (IMAGETRAIL_REGISTRY_ORGS).
    allowed = visible_registries(principal, settings)
    if allowed is not None:
        foreign = sorted({p.registry for p in parsed.pushes} - allowed)
        if foreign:
            raise HTTPException(403, f"this credential may not post events of registry {foreign[0]}; map it to "
                                     "the key's organisation in IMAGETRAIL_REGISTRY_ORGS or use an --org '*' key")
    # Group commit with the events of concurrent requests; answered once they are committed.
    stored, duplicates = await request.app.state.registry_writer.submit(parsed.pushes,
                                                                        f"{principal.kind}:{principal.subject}")
    if stored:
        request.app.state.attribution.wake()
    answer = RegistryEventsAnswer(format=parsed.format, received=len(parsed.pushes), stored=stored,
                                  duplicates=duplicates, ignored=parsed.ignored,
                                  validationResponse=parsed.validation_code)
    return JSONResponse(answer.model_dump(exclude_none=True))


@router.get(
    "/v1/coverage/untraced-pushes", response_model=UntracedPage,
    summary="Pushed digests no collector report, label or provenance explains, with counts per registry and actor",
    responses={401: {"description": "No or invalid credentials"}, 403: {"description": "Not a reader"}},
)
def get_untraced_pushes(
    request: Request,
    registry: Optional[str] = Query(None, max_length=255, description="only this registry host[:port]"),
    actor: Optional[str] = Query(None, max_length=255, description="only pushes by this registry user"),
    page: int = Query(1, ge=1, le=100_000),
    page_size: int = Query(50, ge=1, le=MAX_PAGE_SIZE),
    principal: Principal = Depends(authorized),
) -> UntracedPage:
    with request.app.state.sessions() as session:
        return untraced_pushes(session, principal, request.app.state.settings, registry=registry, actor=actor,
                               page=page, page_size=page_size)
