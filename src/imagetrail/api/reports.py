"""POST /v1/reports: a collector report, authenticated by the job's own identity."""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Dict

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from imagetrail.api.request_json import json_body
from imagetrail.auth import Principal
from imagetrail.auth.dependencies import authorized, bearer
from imagetrail.auth.report_claims import assess
from imagetrail.ingest.reports import ReportConflict, Submission
from imagetrail.ingest.validation import (
    ReportInvalid,
    check_report_id,
    passes_fast_check,
    report_schema,
    schema_error,
)
from imagetrail.report import Report
from imagetrail.views.writes import IngestAnswer

router = APIRouter(tags=["reports"])
INGEST_PATH = "/v1/reports"


class _IngestRoute(APIRoute):
    """The ingest hot path without FastAPI's per-request dependency solving.

    Solving ``authorized`` (and its ``Security(bearer)``) for every request cost more CPU than
    parsing, validating and storing the report together. The route keeps its declared dependency
    (OpenAPI, the route-scope test), and the handler does the same steps itself: the bearer
    credential, ``authorized`` (which enforces ROUTE_SCOPES), then the endpoint. A test's
    ``dependency_overrides[authorized]`` is honoured.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def handle(request: Request) -> Response:
            override = request.app.dependency_overrides.get(authorized)
            if override is not None:
                principal = override()
            else:
                principal = await authorized(request, await bearer(request))
            return await post_report(request, principal)

        return handle


def _request_body_schema() -> Dict[str, Any]:
    schema = {k: v for k, v in report_schema().items() if not k.startswith("$")}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


async def post_report(request: Request, principal: Principal = Depends(authorized)) -> Response:
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
    assessment = assess(principal, body)
    if assessment.conflict:
        raise HTTPException(403, f"this {principal.kind} identity may not submit this report: {assessment.conflict}")
    # Typed once, here; the writer stores it with the other waiting reports in one transaction
    # (group commit, ingest/writer.py) and answers once that transaction committed.
    submission = Submission(body, Report.from_dict(body), assessment)
    try:
        result = await request.app.state.ingest_writer.submit(submission, principal)
    except ReportConflict as exc:
        raise HTTPException(409, str(exc)) from None
    if request.app.state.reconcile_scheduler is not None:
        request.app.state.reconcile_scheduler.note_report()  # the first report after a gap wakes reconcile
    answer = IngestAnswer(status="created" if result.created else "duplicate", reportId=result.report_id,
                          pushes=result.pushes)
    # Encoded by pydantic's own serializer: JSONResponse's dict and json.dumps cost more on this hot path.
    return Response(answer.model_dump_json(), status_code=201 if result.created else 200,
                    media_type="application/json")


router.add_api_route(
    INGEST_PATH,
    post_report,
    methods=["POST"],
    route_class_override=_IngestRoute,
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
