"""Migration 0015: the summaries' severity index matches the models, gives the explorer's page of images no cluster
runs its order (no sort of every match), replaces the single-column index and downgrades, on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from imagetrail.queries.explorer import _not_running_digests, _not_running_rows
from imagetrail.store.db import make_sessionmaker
from imagetrail.views.filters import ExplorerFilters
from tests.cloud.support import ADMIN, reader
from tests.support.migrations import downgrade, index_differences, index_plan, migrated

INDEX, REPLACED = "ix_vulnerability_summaries_by_severity", "ix_vulnerability_summaries_max"
READER = reader("contoso")


@pytest.mark.parametrize("principal", [ADMIN, READER], ids=["every organisation", "some organisations"])
def test_0015_orders_the_not_running_page_matches_the_models_and_downgrades(database_url, principal):
    with migrated(database_url, "contoso") as engine:
        filters = ExplorerFilters(running=False, min_severity="high")
        with make_sessionmaker(engine)() as session:
            digests = _not_running_digests(session, filters, principal).subquery()
            page = _not_running_rows(session, filters, principal, digests, "-severity").limit(50)
        with engine.begin() as conn:
            plan = index_plan(conn, page, "vulnerability_summaries", INDEX)
            diff = index_differences(conn, INDEX, REPLACED)
            names = {i["name"] for i in sa.inspect(conn).get_indexes("vulnerability_summaries")}
        assert INDEX in plan, plan
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan  # the index gives the page its order
        assert diff == [] and INDEX in names and REPLACED not in names
        downgrade(engine, "0014")
        with engine.connect() as conn:
            names = {i["name"] for i in sa.inspect(conn).get_indexes("vulnerability_summaries")}
        assert INDEX not in names and REPLACED in names
