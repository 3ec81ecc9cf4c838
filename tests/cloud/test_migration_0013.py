"""Migration 0013: the exposed containers' partial index matches the models, serves the explorer's own
"exposed AND high" statements (for a reader of every organisation and of some) and downgrades, on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from imagetrail.queries.explorer import _conditions, running_count
from imagetrail.store.db import make_sessionmaker
from imagetrail.views.filters import ExplorerFilters
from tests.cloud.support import ADMIN, reader
from tests.support.migrations import downgrade, index_differences, index_plan, migrated

INDEX = "ix_running_containers_exposed_by_severity"
READER = reader("contoso")


@pytest.mark.parametrize("principal", [ADMIN, READER], ids=["every organisation", "some organisations"])
def test_0013_serves_exposed_and_high_matches_the_models_and_downgrades(database_url, principal):
    with migrated(database_url, "contoso") as engine:
        with make_sessionmaker(engine)() as session:
            count = running_count(*_conditions(session, ExplorerFilters(exposed=True, min_severity="high"), principal))
        with engine.begin() as conn:
            plan = index_plan(conn, count, "running_containers", INDEX)
            diff = index_differences(conn, INDEX)
        assert INDEX in plan, plan
        if engine.dialect.name == "postgresql":
            assert "Index Only Scan" in plan, plan  # the reader's columns are in the index: no row read
        assert diff == []
        downgrade(engine, "0012")
        with engine.connect() as conn:
            names = {i["name"] for i in sa.inspect(conn).get_indexes("running_containers")}
        assert INDEX not in names
