"""The FastAPI application: API routers, web explorer, health."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.concurrency import run_in_threadpool

from imagetrail import __version__
from imagetrail.api.limits import BodyLimitMiddleware
from imagetrail.auth.api_keys import KeyCache
from imagetrail.auth.tokens import TokenVerifier
from imagetrail.gc_pause import tune_for_serving
from imagetrail.ingest.registry_events import store_event_batches
from imagetrail.ingest.writer import IngestWriter
from imagetrail.server.ingest_lane import ImageTrailAPI
from imagetrail.services.attribution_worker import AttributionWorker
from imagetrail.settings import Settings
from imagetrail.store.db import make_engine, make_sessionmaker

log = logging.getLogger("imagetrail.server")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Background work of a serving process only (not of one-off tools or tests that never start
    # the app): registry attribution picks up what a restart left queued, and a reconcile pass at
    # startup covers the backend's own downtime.
    tune_for_serving()
    app.state.attribution.start()
    scheduler = app.state.reconcile_scheduler
    if scheduler is not None:
        scheduler.start()
    try:
        yield
    finally:
        if scheduler is not None:
            await run_in_threadpool(scheduler.stop)
        app.state.attribution.stop()


def create_app(settings: Optional[Settings] = None) -> FastAPI:
    settings = settings or Settings.from_env()
    app = ImageTrailAPI(
        lifespan=_lifespan,
        title="ImageTrail",
        version=__version__,
        description="Trace a container image digest to the CI/CD run, repository, commit and owner.",
        # Swagger UI pulls its script from a CDN into a page on this origin: only when asked for.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url=None,
    )
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)
    app.state.token_verifier = TokenVerifier(settings)
    app.state.api_key_cache = KeyCache(settings.api_key_cache_seconds)
    app.state.ingest_writer = IngestWriter(app.state.sessions, max_batch=settings.ingest_max_batch,
                                           batch_wait=settings.ingest_batch_wait_ms / 1000)
    app.state.registry_writer = IngestWriter(app.state.sessions, max_batch=settings.ingest_max_batch,
                                             batch_wait=settings.ingest_batch_wait_ms / 1000, store=store_event_batches)
    # Reads pushed images from their registries, off the request path (and what a restart left queued).
    app.state.attribution = AttributionWorker(app.state.sessions, settings)
    app.state.reconcile_scheduler = None
    if settings.reconcile_configured:
        from imagetrail.services.reconcile.scheduler import ReconcileScheduler

        app.state.reconcile_scheduler = ReconcileScheduler(settings, app.state.sessions)

    def database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # The service stays up; the client (collector, reconcile) retries later.
        log.warning("database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            status_code=503,
            content={"detail": "the database is unavailable; retry later"},
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )

    def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated or isinstance(exc, OperationalError):
            return database_unavailable(request, exc)
        raise exc

    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(PoolTimeoutError, database_unavailable)
    app.add_exception_handler(DBAPIError, database_error)

    from imagetrail.api import cloud, health, registry, reports, trace
    from imagetrail.web import routes as web

    for module in (health, reports, registry, trace, cloud, web):
        app.include_router(module.router)
    # Outermost of our layers: body sizes are enforced before routing, parsing and authentication.
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    return app
