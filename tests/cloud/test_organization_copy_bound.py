"""A container's copy of its digest's organisations is bounded: past ``ORGANIZATION_COPY_MAX`` organisations it
is ``ORGANIZATION_COPY_FULL`` and readers look the digest up in digest_organizations instead, so a digest pushed by
very many organisations neither fails the row's index entries nor changes who sees it; on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from imagetrail.ingest.digest_organizations import _edit_containers, fill_container_organizations
from imagetrail.queries.explorer import run_query
from imagetrail.store.db import make_sessionmaker
from imagetrail.store.models.cloud import (
    ORGANIZATION_COPY_FULL,
    ORGANIZATION_COPY_MAX,
)
from imagetrail.views.filters import ExplorerFilters
from tests.cloud.support import add_containers, digest, reader
from tests.support.migrations import migrated

ORGANIZATIONS = [f"org{n:04d}" for n in range(1, ORGANIZATION_COPY_MAX + 20)]
POPULAR, NICHE = digest(1), digest(2)  # pushed by every organisation; by the first one only


def _copies(engine) -> dict:
    with engine.connect() as conn:
        return dict(conn.exec_driver_sql("SELECT pod, organization_ids FROM running_containers").all())


def _visible(engine, organization: str) -> set:
    with make_sessionmaker(engine)() as session:
        page = run_query(session, ExplorerFilters(running=True), reader(organization))
    assert page.total == len(page.rows)
    return {row.pod for row in page.rows}


def test_a_digest_of_very_many_organisations_is_looked_up_not_copied(database_url):
    with migrated(database_url, *ORGANIZATIONS) as engine:
        ids = range(1, len(ORGANIZATIONS) + 1)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO digest_organizations (digest, organization_id) VALUES (:d, :o)"),
                         [{"d": POPULAR, "o": i} for i in ids] + [{"d": NICHE, "o": 1}])
            add_containers(conn, [("popular", POPULAR, None), ("niche", NICHE, None), ("edited", NICHE, ",1,")])
        with engine.begin() as conn:
            assert fill_container_organizations(conn) == 2
        copies = _copies(engine)
        assert copies["popular"] == ORGANIZATION_COPY_FULL and copies["niche"] == ",1,"
        # The edits (what ingest does as pushes come and go) stop at the bound too, and leave a full copy alone.
        with engine.begin() as conn:
            _edit_containers(conn, added=[(NICHE, i) for i in ids if i > 1], removed=[])
        copies = _copies(engine)
        assert copies["niche"] == copies["edited"] == ORGANIZATION_COPY_FULL
        with engine.begin() as conn:
            _edit_containers(conn, added=[(POPULAR, len(ORGANIZATIONS) + 5)], removed=[(POPULAR, 1), (NICHE, 1)])
        assert set(_copies(engine).values()) == {ORGANIZATION_COPY_FULL}
        # Who sees what is digest_organizations' answer: NICHE kept organisation 1 there (the edit above only
        # touched the copies), POPULAR every organisation.
        assert _visible(engine, ORGANIZATIONS[0]) == {"popular", "niche", "edited"}
        assert _visible(engine, ORGANIZATIONS[-1]) == {"popular"}
        assert _visible(engine, "nobody") == set()


def test_the_bound_keeps_a_copy_within_one_index_entry():
    # the longest copy: ids of up to 10 digits, each with its comma, after the first comma; PostgreSQL's btree
    # entries hold 2,704 bytes
    assert len("," + ",".join(["9" * 10] * ORGANIZATION_COPY_MAX) + ",") == 1 + 11 * ORGANIZATION_COPY_MAX < 2_700
