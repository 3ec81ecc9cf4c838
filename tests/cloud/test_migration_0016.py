"""Migration 0016: a reader's count of running containers reads the organisation copy's index alone, counts
filled and not yet filled copies once each (the same rows as the page), matches the models and downgrades, on
SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from imagetrail.queries.explorer import _conditions, run_query, running_count
from imagetrail.store.db import make_sessionmaker
from imagetrail.views.filters import ExplorerFilters
from tests.cloud.support import ADMIN, add_containers, digest, reader
from tests.support.migrations import downgrade, index_differences, index_plan, migrated

INDEX = "ix_running_containers_organization_ids"
READER = reader("contoso")  # organisation 1 of contoso (1) and fabrikam (2)
ONE, TWO, BOTH = digest(1), digest(2), digest(3)
# pod: (digest, its organisations' copy; NULL = not filled yet, so read from digest_organizations)
CONTAINERS = {
    "filled-contoso": (ONE, ",1,"),
    "filled-fabrikam": (TWO, ",2,"),
    "filled-both": (BOTH, ",1,2,"),
    "unfilled-contoso": (ONE, None),
    "unfilled-fabrikam": (TWO, None),
    "no-digest": (None, ","),
}
VISIBLE = {"filled-contoso", "filled-both", "unfilled-contoso"}


def test_0016_counts_a_readers_containers_from_the_index_matches_the_models_and_downgrades(database_url):
    with migrated(database_url, "contoso", "fabrikam") as engine:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO digest_organizations (digest, organization_id) VALUES "
                                 "(:one, 1), (:two, 2), (:both, 1), (:both, 2)"), {"one": ONE, "two": TWO, "both": BOTH})
            add_containers(conn, [(pod, *row) for pod, row in CONTAINERS.items()])
        with make_sessionmaker(engine)() as session:
            count = running_count(*_conditions(session, ExplorerFilters(), READER))
            total = session.execute(count).scalar_one()
            page = run_query(session, ExplorerFilters(running=True), READER)
            everything = run_query(session, ExplorerFilters(running=True), ADMIN)
        with engine.begin() as conn:
            plan = index_plan(conn, count, "running_containers", INDEX)
            diff = index_differences(conn, INDEX)
        assert total == page.total == len(VISIBLE)
        assert {row.pod for row in page.rows} == VISIBLE
        assert everything.total == len(CONTAINERS)
        assert INDEX in plan, plan
        if engine.dialect.name == "postgresql":
            assert f"Index Only Scan using {INDEX}" in plan, plan  # the copy alone: no row of the table read
        assert diff == []
        downgrade(engine, "0015")
        with engine.connect() as conn:
            names = {i["name"] for i in sa.inspect(conn).get_indexes("running_containers")}
        assert INDEX not in names
