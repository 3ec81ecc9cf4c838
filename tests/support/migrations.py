"""Migrating a test database down (each migration's test checks its downgrade)."""

from __future__ import annotations

from alembic import command
from sqlalchemy.engine import Engine

from imagetrail.store.migrate import alembic_config


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate ``engine``'s database down to ``revision``, in one transaction (the counterpart of
    ``imagetrail.store.migrate.upgrade``, which the server has no use for)."""
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
