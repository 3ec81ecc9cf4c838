"""Cloud test fixtures: a migrated database (SQLite and PostgreSQL), the app with a chosen principal."""

from __future__ import annotations

from typing import Iterator

import pytest

from imagetrail.store.db import make_engine, make_sessionmaker
from imagetrail.store.migrate import upgrade
from tests.cloud import support


@pytest.fixture
def sessions(database_url):
    """A sessionmaker on a database migrated to head with the real Alembic migrations."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


class AppHandle:
    def __init__(self, app, client):
        self.app = app
        self.client = client
        self.principal = support.ADMIN

    def act_as(self, principal) -> None:
        self.principal = principal


@pytest.fixture
def api(database_url) -> Iterator[AppHandle]:
    """The real app (TestClient) on a migrated database; requests run as ``api.principal``.

    Authentication itself is the backend's (tested there): these tests override the
    dependency with FastAPI's ``dependency_overrides`` to act as a given principal.
    """
    from fastapi.testclient import TestClient

    from imagetrail.auth.dependencies import authorized
    from imagetrail.server.app import create_app
    from imagetrail.settings import Settings

    app = create_app(Settings(database_url=database_url))
    upgrade(app.state.engine)
    with TestClient(app) as client:
        handle = AppHandle(app, client)
        app.dependency_overrides[authorized] = lambda: handle.principal
        yield handle
    app.state.engine.dispose()
