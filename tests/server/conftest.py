"""Backend test fixtures: an app on a migrated database, API keys, a local OIDC issuer."""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from imagetrail.auth.api_keys import create_key
from imagetrail.server.app import create_app
from imagetrail.settings import Settings
from imagetrail.store.db import make_engine, transaction
from imagetrail.store.migrate import upgrade
from tests.support.oidc_provider import LocalIssuer


def migrate(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()


@pytest.fixture
def local_issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as issuer:
        yield issuer


@pytest.fixture
def make_client(database_url) -> Iterator[Callable[..., TestClient]]:
    """make_client(**settings) -> a TestClient on the migrated test database."""
    migrate(database_url)
    clients = []

    def factory(**overrides) -> TestClient:
        settings = dataclasses.replace(Settings(database_url=database_url), **overrides)
        client = TestClient(create_app(settings))
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.app.state.attribution.stop()
        client.app.state.engine.dispose()


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def new_key(client: TestClient, org: str, scope: str) -> dict:
    with transaction(client.app.state.sessions) as session:
        key = create_key(session, org, scope).key
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def admin(client) -> dict:
    return new_key(client, "*", "admin")
