"""POST /v1/reports: a collector report, authenticated by the job's own identity."""

from __future__ import annotations

from typing import Any, Dict

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from imagetrail.auth import Principal
from imagetrail.auth.dependencies import authorized
from imagetrail.auth.report_claims import report_conflict
from imagetrail.ingest.reports import ReportConflict
from imagetrail.api.request_json import json_body
from imagetrail.ingest.validation import (
    ReportInvalid,
    check_report_id,
    passes_fast_check,
    report_schema,
    schema_error,
)

router = APIRouter(tags=["reports"])


class IngestAnswer(BaseModel):
    status: str  # created | duplicate
    reportId: str
    pushes: int


def _request_body_schema() -> Dict[str, Any]:
    schema = {k: v for k, v in report_schema().items() if not k.startswith("$")}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


@router.post(
    "/v1/reports",
    summary="Submit a collector report",
    response_model=IngestAnswer,
    status_code=201,
    openapi_extra={"requestBody": _request_body_schema()},
    responses={
        200: {"model": IngestAnswer, "description": "Already stored (same reportId); nothing changed"},
        400: {"description": "The body is not JSON"},
        401: {"description": "No or invalid credentials"},
        403: {"description": "The credential may not write this report (another organisation, project, "
                             "pipeline or run), or the report contradicts its job token's claims (repository, "
                             "branch, commit); the detail names the field"},
        409: {"description": "A report with this reportId is stored with different content; the detail names "
                             "the fields that differ"},
        413: {"description": "The body exceeds IMAGETRAIL_MAX_REPORT_BYTES"},
        422: {"description": "Not a valid report; the detail names the field path"},
        503: {"description": "The database is unavailable; retry after Retry-After seconds"},
    },
)
async def post_report(request: Request, principal: Principal = Depends(authorized)) -> JSONResponse:
    body = await json_body(request)
    # The compiled validator accepts a valid report in microseconds, on the event loop; only a
    # refused one goes to the (slow) reference validator, off the loop, to word the error.
    if not passes_fast_check(body):
        message = await run_in_threadpool(schema_error, body)
        if message is not None:
            raise HTTPException(422, message)
    try:
        check_report_id(body)
    except ReportInvalid as exc:
        raise HTTPException(422, str(exc)) from None
    conflict = report_conflict(principal, body)
    if conflict:
        raise HTTPException(403, f"this {principal.kind} identity may not submit this report: {conflict}")
    # Group commit (ingest/writer.py): answered once the report's transaction committed.
    try:
        result = await request.app.state.ingest_writer.submit(body, principal)
    except ReportConflict as exc:
        raise HTTPException(409, str(exc)) from None
    if request.app.state.reconcile_scheduler is not None:
        request.app.state.reconcile_scheduler.note_report()  # the first report after a gap wakes reconcile
    answer = IngestAnswer(status="created" if result.created else "duplicate", reportId=result.report_id,
                          pushes=result.pushes)
    return JSONResponse(answer.model_dump(), status_code=201 if result.created else 200)
