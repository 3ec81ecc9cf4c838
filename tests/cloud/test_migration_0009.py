"""Migration 0009 (remediation trackers) matches the models and downgrades, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imagetrail.store.db import Base, make_engine
from imagetrail.store.migrate import upgrade
from tests.support.migrations import downgrade

NEW_COLUMNS = {"tracker", "pipeline_id", "image_repository"}


def _columns(conn) -> set:
    return {c["name"] for c in sa.inspect(conn).get_columns("remediation_items")}


def test_0009_matches_the_models_and_downgrades(database_url):
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert NEW_COLUMNS <= _columns(conn)
            assert "run_owners" in sa.inspect(conn).get_table_names()
            diff = [
                d
                for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                if "remediation_items" in repr(d) or "run_owners" in repr(d)
            ]
        assert diff == []
        downgrade(engine, "0007")
        with engine.connect() as conn:
            assert not NEW_COLUMNS & _columns(conn)
            assert "run_owners" not in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
