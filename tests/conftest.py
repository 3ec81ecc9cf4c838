"""Shared fixtures: real services (see tests/support/services.py) and a fresh database per test."""

from __future__ import annotations

import uuid

import pytest

from tests.support import services


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A running Docker engine reachable through the default socket / DOCKER_HOST."""
    if not services.docker_available():
        services.unavailable("the Docker engine", "'docker version' failed")


@pytest.fixture(scope="session")
def registry(docker_engine) -> str:
    """host:port of a real registry (Distribution) on the loopback interface."""
    if not services.registry_available():
        services.unavailable("the registry", f"http://{services.REGISTRY}/v2/ did not answer")
    return services.REGISTRY


@pytest.fixture(scope="session")
def postgres_server() -> str:
    if not services.postgres_available():
        services.unavailable("PostgreSQL", "nothing listens on 127.0.0.1:5432")
    return services.POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str):
    """A fresh, empty schema on the real PostgreSQL server, dropped after the test."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'imagetrail.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request) -> str:
    """Runs the test on the embedded default (SQLite) and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")
