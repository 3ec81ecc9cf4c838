"""Migration 0011 on SQLite and PostgreSQL: the push indexes end with the id (the trace's page order), match the
models, and downgrade restores the two-column ones."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imagetrail.store.db import Base, make_engine
from imagetrail.store.migrate import upgrade
from tests.support.migrations import downgrade


def _push_indexes(conn) -> dict:
    return {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes("pushes")
            if i["name"].startswith(("ix_pushes_digest", "ix_pushes_reference_id"))}


def test_0011_matches_the_models_and_downgrades(database_url):
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert _push_indexes(conn) == {
                "ix_pushes_digest_pushed_at_id": ["digest", "pushed_at", "id"],
                "ix_pushes_reference_id_pushed_at_id": ["reference_id", "pushed_at", "id"]}
            diff = [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                    if "ix_pushes" in repr(d)]
        assert diff == []
        downgrade(engine, "0010")
        with engine.connect() as conn:
            assert _push_indexes(conn) == {"ix_pushes_digest_pushed_at": ["digest", "pushed_at"],
                                           "ix_pushes_reference_id_pushed_at": ["reference_id", "pushed_at"]}
    finally:
        engine.dispose()
