"""Migration 0004 on SQLite and PostgreSQL: the tables match the models, and downgrade removes them."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imagetrail.store.db import Base, make_engine
from imagetrail.store.migrate import upgrade
from tests.support.migrations import downgrade

TABLES = {"registry_events", "registry_artifacts", "registry_attributions"}


def test_0004_matches_the_models_and_downgrades(database_url):
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert TABLES <= set(sa.inspect(conn).get_table_names())
            diff = [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                    if any(t in repr(d) for t in TABLES)]
        assert diff == []
        downgrade(engine, "0003")
        with engine.connect() as conn:
            assert not TABLES & set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
