"""The FastAPI application: API routers, web explorer, health."""

from __future__ import annotations

from typing import Optional

from fastapi import FastAPI

from imagetrail import __version__
from imagetrail.server.db import make_engine, make_sessionmaker
from imagetrail.server.settings import Settings


def create_app(settings: Optional[Settings] = None) -> FastAPI:
    settings = settings or Settings.from_env()
    app = FastAPI(
        title="ImageTrail",
        version=__version__,
        description="Trace a container image digest to the CI/CD run, repository, commit and owner.",
    )
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)

    from imagetrail.server.routes import cloud, health, reports, trace
    from imagetrail.web import routes as web

    for module in (health, reports, trace, cloud, web):
        app.include_router(module.router)
    return app
