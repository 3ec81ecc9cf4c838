"""Cloud side API: cluster inventories, scans, digest relations, explorer queries, remediation.

Writes (inventory, scans, relations) describe clusters and registries, which belong to no single
organisation: they need an ingest credential granted every organisation
(``imagetrail keys create --org '*' --scope ingest``). Reads are filtered per organisation.
"""

from __future__ import annotations

import inspect
import logging
from typing import List, Literal, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.concurrency import run_in_threadpool

from imagetrail.auth import Principal
from imagetrail.auth.dependencies import authorized
from imagetrail.auth.errors import forbidden
from imagetrail.gc_pause import paused_gc
from imagetrail.ingest import cloud as store
from imagetrail.inventory import Changes, Inventory
from imagetrail.parsers.scans import ScanFormatError, parse_report
from imagetrail.queries import coverage, explorer, pipeline_risk
from imagetrail.queries.visibility import reads_every_organization
from imagetrail.reference import is_digest
from imagetrail.services import owner_resolve, remediation, remediation_close
from imagetrail.store.db import transaction
from imagetrail.views.coverage import CoverageSummary, GapPage
from imagetrail.views.explorer import ExplorerPage
from imagetrail.views.filters import (
    DEFAULT_SORT,
    FILTER_FIELDS,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    SORT_KEYS,
    ExplorerFilters,
    FilterField,
)
from imagetrail.views.pipelines import PipelineReport
from imagetrail.views.remediation import CloseSuggestion, RemediationAnswer, ResolveAnswer
from imagetrail.views.writes import (
    ChangesAnswer,
    ImageScanAnswer,
    InventoryAnswer,
    RelationsAnswer,
    ScanAnswer,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["cloud"])

def _all_organizations(principal: Principal, what: str) -> None:
    if not reads_every_organization(principal):
        raise forbidden(
            f"{what} concern every organisation: use a credential granted all organisations "
            "(imagetrail keys create --org '*' --scope ingest)"
        )


def _validation_detail(exc: ValidationError, where: str) -> str:
    problems = []
    for error in exc.errors()[:5]:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        problems.append(f"{path}: {error['msg']}")
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return f"{where}: " + "; ".join(problems) + more


# --- inventory --------------------------------------------------------------------------------


async def _cluster_body(request: Request, cluster: str, model, what: str):
    """The request body (bounded by server/limits.py) as ``model``; 422 naming the field, or a cluster
    not the URL's."""
    raw = await request.body()
    try:
        with paused_gc():  # ~60,000 container models for a 50,000-pod cluster
            body = model.model_validate_json(raw)
    except ValidationError as exc:
        raise HTTPException(422, _validation_detail(exc, f"{what} of cluster {cluster}")) from None
    if body.cluster != cluster:
        raise HTTPException(422, f"{what}: cluster is {body.cluster!r} but the URL names {cluster!r}")
    return body


async def _write_cluster(request: Request, cluster: str, write):
    """``write(session)`` in one transaction; a refusal or a concurrent sync is a 409 that says why."""

    def run():
        with transaction(request.app.state.sessions) as session:
            result = write(session)
        try:  # a second, short transaction: the explorer's fast paths (exact either way)
            with transaction(request.app.state.sessions) as session:
                store.fill_after_sync(session, cluster)
        except DBAPIError:
            log.warning("filling the explorer's copies after syncing cluster %s failed; the next sync retries",
                        cluster, exc_info=True)
        return result

    try:
        return await run_in_threadpool(run)
    except IntegrityError:
        raise HTTPException(409, f"cluster {cluster} was synced concurrently; retry") from None
    except (store.EmptyInventoryRefused, store.UnknownCluster) as exc:
        raise HTTPException(409, str(exc)) from None


@router.post(
    "/v1/clusters/{cluster}/inventory",
    response_model=InventoryAnswer,
    summary="Replace a cluster's running containers (imagetrail k8s sync)",
)
async def post_inventory(
    cluster: str, request: Request, principal: Principal = Depends(authorized)
) -> InventoryAnswer:
    _all_organizations(principal, "cluster inventories")
    inventory = await _cluster_body(request, cluster, Inventory, "inventory")
    result = await _write_cluster(request, cluster, lambda session: store.replace_inventory(session, inventory))
    return InventoryAnswer(**result.__dict__)


@router.post(
    "/v1/clusters/{cluster}/changes",
    response_model=ChangesAnswer,
    summary="Replace the containers of changed pods and drop removed ones (imagetrail k8s sync --watch)",
)
async def post_changes(
    cluster: str, request: Request, principal: Principal = Depends(authorized)
) -> ChangesAnswer:
    _all_organizations(principal, "cluster inventories")
    changes = await _cluster_body(request, cluster, Changes, "changes")
    result = await _write_cluster(request, cluster, lambda session: store.apply_changes(session, changes))
    return ChangesAnswer(**result.__dict__)


# --- scans ------------------------------------------------------------------------------------


@router.post(
    "/v1/scans",
    response_model=ScanAnswer,
    status_code=201,
    summary="Ingest one Trivy or Grype JSON report (the body), stored whole or not at all",
)
async def post_scan(
    request: Request,
    file_name: str = Query(..., min_length=1, max_length=1024),
    principal: Principal = Depends(authorized),
) -> ScanAnswer:
    _all_organizations(principal, "vulnerability scans")
    raw = await request.body()  # bounded by server/limits.py before it is read
    try:
        report = await run_in_threadpool(parse_report, raw, file_name)
    except ScanFormatError as exc:
        raise HTTPException(422, str(exc)) from None

    def ingest() -> store.ScanResult:
        with transaction(request.app.state.sessions) as session:
            return store.ingest_scan(session, report, file_name)

    try:
        result = await run_in_threadpool(ingest)
    except IntegrityError:
        raise HTTPException(
            409, f"{file_name}: another scan of the same image was stored at the same time; retry"
        ) from None
    return ScanAnswer(
        file_name=result.file_name,
        format=result.format,
        scanner=result.scanner,
        images=[ImageScanAnswer(**image.__dict__) for image in result.images],
        warnings=result.warnings,
    )


# --- digest relations -------------------------------------------------------------------------


class RelationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index_digest: str
    manifest_digest: str
    os: Optional[str] = Field(default=None, max_length=64)
    architecture: Optional[str] = Field(default=None, max_length=64)
    variant: Optional[str] = Field(default=None, max_length=64)


class RelationsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["registry", "collector", "scanner"] = "registry"
    relations: List[RelationIn] = Field(max_length=10000)


@router.post(
    "/v1/image-relations",
    response_model=RelationsAnswer,
    summary="Record image index -> platform manifest relations (imagetrail registry resolve)",
)
async def post_relations(
    body: RelationsIn, request: Request, principal: Principal = Depends(authorized)
) -> RelationsAnswer:
    _all_organizations(principal, "digest relations")
    for number, relation in enumerate(body.relations):
        for name in ("index_digest", "manifest_digest"):
            if not is_digest(getattr(relation, name)):
                raise HTTPException(422, f"relations[{number}].{name} must be sha256:<64 lower-case hex>")

    def record() -> int:
        with transaction(request.app.state.sessions) as session:
            return store.record_relations(
                session,
                [(r.index_digest, r.manifest_digest, r.os, r.architecture) for r in body.relations],
                source=body.source,
                variant={r.manifest_digest: r.variant for r in body.relations if r.variant},
            )

    try:
        new = await run_in_threadpool(record)
    except IntegrityError:
        raise HTTPException(409, "the same relations were recorded concurrently; retry") from None
    return RelationsAnswer(received=len(body.relations), new=new)


# --- explorer ---------------------------------------------------------------------------------


def _filter_parameter(spec: FilterField) -> inspect.Parameter:
    """One query parameter per filter, from the model's field: its description and string bound. Values
    arrive as text and the model converts them, so every 422 names the field the same way."""
    annotation = {"flag": bool, "tristate": Optional[bool]}.get(spec.surface.widget, Optional[str])
    query = Query(spec.default, description=spec.description, max_length=spec.max_length)
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=query, annotation=annotation)


def explorer_filters(**values: object) -> ExplorerFilters:
    try:
        return ExplorerFilters(**values)
    except ValidationError as exc:
        raise HTTPException(422, _validation_detail(exc, "query")) from None


# FastAPI reads a dependency's parameters from its signature: built from ExplorerFilters, not written out.
explorer_filters.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [_filter_parameter(spec) for spec in FILTER_FIELDS], return_annotation=ExplorerFilters
)

SEEK_HELP = (
    "a seek cursor from the Link header's rel=%s of the neighbouring page: the page is read from there "
    "instead of past an offset (page still numbers it)"
)


@router.get(
    "/v1/query",
    response_model=ExplorerPage,
    summary="Explorer: running containers with exposure, vulnerabilities and their pipeline trail",
)
def get_query(
    request: Request,
    response: Response,
    filters: ExplorerFilters = Depends(explorer_filters),
    page: int = Query(1, ge=1, le=MAX_PAGE),
    page_size: int = Query(50, ge=1, le=MAX_PAGE_SIZE),
    sort: str = Query(DEFAULT_SORT, max_length=20, description=" | ".join(SORT_KEYS)),
    after: Optional[str] = Query(None, max_length=explorer.MAX_CURSOR, description=SEEK_HELP % "next"),
    before: Optional[str] = Query(None, max_length=explorer.MAX_CURSOR, description=SEEK_HELP % "prev"),
    principal: Principal = Depends(authorized),
) -> ExplorerPage:
    if sort not in SORT_KEYS:
        raise HTTPException(422, f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
    with request.app.state.sessions() as session:
        try:
            result = explorer.run_query(session, filters, principal, page, page_size, sort, after, before)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    # RFC 8288 links (relative) to the neighbouring pages with their seek cursors: a deep page costs what
    # page 1 does when a client follows them.
    links = []
    for rel, step, name, other, cursor in (
        ("next", 1, "after", "before", result.next_cursor),
        ("prev", -1, "before", "after", result.prev_cursor),
    ):
        if cursor:
            url = request.url.remove_query_params(other)
            url = url.include_query_params(**{"page": page + step, name: cursor})
            links.append(f'<{url.path}?{url.query}>; rel="{rel}"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return result


@router.get(
    "/v1/query/pipelines",
    response_model=PipelineReport,
    summary="Pipelines that pushed images with min_severity (default high) findings in the last N days",
)
def get_pipeline_risk(
    request: Request,
    filters: ExplorerFilters = Depends(explorer_filters),
    days: int = Query(pipeline_risk.DEFAULT_DAYS, ge=1, le=pipeline_risk.MAX_DAYS),
    principal: Principal = Depends(authorized),
) -> PipelineReport:
    with request.app.state.sessions() as session:
        try:
            return pipeline_risk.vulnerable_pushes_by_pipeline(session, principal, days, filters)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None


@router.get(
    "/v1/coverage/gaps",
    response_model=GapPage,
    summary="Running images no pipeline report explains, and why",
)
def get_gaps(
    request: Request,
    filters: ExplorerFilters = Depends(explorer_filters),
    page: int = Query(1, ge=1, le=MAX_PAGE),
    page_size: int = Query(50, ge=1, le=MAX_PAGE_SIZE),
    principal: Principal = Depends(authorized),
) -> GapPage:
    with request.app.state.sessions() as session:
        return coverage.coverage_gaps(session, principal, filters, page, page_size)


@router.get(
    "/v1/coverage",
    response_model=CoverageSummary,
    summary="Which clusters, registries, projects and scanners report, and when each last did",
)
def get_coverage(
    request: Request, principal: Principal = Depends(authorized)
) -> CoverageSummary:
    with request.app.state.sessions() as session:
        return coverage.coverage_summary(session, principal)


# --- remediation ------------------------------------------------------------------------------


class RemediationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filters: ExplorerFilters = Field(default_factory=ExplorerFilters)
    dry_run: bool = False
    work_item_type: str = Field(default=remediation.DEFAULT_WORK_ITEM_TYPE, min_length=1, max_length=128)
    max_items: int = Field(default=100, ge=1, le=1000)


@router.post(
    "/v1/remediations",
    response_model=RemediationAnswer,
    summary="Open one Azure DevOps work item per vulnerable image, in the project that built it",
)
def post_remediations(
    body: RemediationRequest, request: Request, principal: Principal = Depends(authorized)
) -> RemediationAnswer:
    try:
        return remediation.remediate(
            request.app.state.sessions,
            request.app.state.settings,
            principal,
            body.filters,
            dry_run=body.dry_run,
            work_item_type=body.work_item_type,
            max_items=body.max_items,
        )
    except remediation.RemediationConfigError as exc:
        raise HTTPException(503, str(exc)) from None


@router.get(
    "/v1/remediations/close-suggestions",
    response_model=List[CloseSuggestion],
    summary="Items a newer push of the same pipeline no longer needs (its newest scan has none of the CVEs)",
)
def get_close_suggestions(
    request: Request, principal: Principal = Depends(authorized)
) -> List[CloseSuggestion]:
    with request.app.state.sessions() as session:
        return remediation_close.close_suggestions(session, principal)


class OwnersRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filters: ExplorerFilters = Field(default_factory=ExplorerFilters)
    max_runs: int = Field(default=100, ge=1, le=1000)


@router.post(
    "/v1/owners/resolve",
    response_model=ResolveAnswer,
    summary="Resolve and store the owners (CODEOWNERS, commit author, team, requester) of the query's images",
)
def post_owners_resolve(
    body: OwnersRequest, request: Request, principal: Principal = Depends(authorized)
) -> ResolveAnswer:
    try:
        return owner_resolve.resolve(
            request.app.state.sessions, request.app.state.settings, principal, body.filters, body.max_runs
        )
    except remediation.RemediationConfigError as exc:
        raise HTTPException(503, str(exc)) from None
