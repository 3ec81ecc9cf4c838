"""Registry-side fixtures: the backend's app fixtures (a migrated database on SQLite and PostgreSQL)."""

from tests.server.conftest import admin, client, make_client  # noqa: F401  (re-exported fixtures)
