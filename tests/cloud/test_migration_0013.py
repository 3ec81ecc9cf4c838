"""Migration 0013: the exposed containers' partial index matches the models, serves the explorer's own
"exposed AND high" statements (for a reader of every organisation and of some) and downgrades, on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imagetrail.auth import Principal
from imagetrail.queries.explorer import _conditions
from imagetrail.store.db import Base, make_engine, make_sessionmaker
from imagetrail.store.migrate import upgrade
from imagetrail.store.models.cloud import RunningContainer
from imagetrail.views.filters import ExplorerFilters
from tests.support.migrations import downgrade

INDEX = "ix_running_containers_exposed_by_severity"
ADMIN = Principal(kind="api-key", subject="t", scopes=frozenset({"read"}), organizations=None)
READER = Principal(kind="api-key", subject="t", scopes=frozenset({"read"}), organizations=frozenset({"contoso"}))


def _plan(conn, statement) -> str:
    """How the database would run ``statement`` with this index: SQLite is made to use it (``INDEXED BY``
    fails when the WHERE clause does not imply the index's); PostgreSQL is kept off the table."""
    if conn.dialect.name == "sqlite":
        sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
        sql = sql.replace("FROM running_containers", f"FROM running_containers INDEXED BY {INDEX}", 1)
        return " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
    return " ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}"))


@pytest.mark.parametrize("principal", [ADMIN, READER], ids=["every organisation", "some organisations"])
def test_0013_serves_exposed_and_high_matches_the_models_and_downgrades(database_url, principal):
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO organizations (id, system, name) VALUES (1, 'github', 'contoso')")
        with make_sessionmaker(engine)() as session:
            conditions = _conditions(session, ExplorerFilters(exposed=True, min_severity="high"), principal)
        count = sa.select(sa.func.count()).select_from(RunningContainer).where(*conditions)
        with engine.begin() as conn:
            plan = _plan(conn, count)
            # SQLite's reflection cannot compare a DESC index (it lists ix_running_containers_by_severity too)
            diff = [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                    if INDEX in repr(d)] if conn.dialect.name == "postgresql" else []
        assert INDEX in plan, plan
        if engine.dialect.name == "postgresql":
            assert "Index Only Scan" in plan, plan  # the reader's columns are in the index: no row read
        assert diff == []
        downgrade(engine, "0012")
        with engine.connect() as conn:
            names = {i["name"] for i in sa.inspect(conn).get_indexes("running_containers")}
        assert INDEX not in names
    finally:
        engine.dispose()

