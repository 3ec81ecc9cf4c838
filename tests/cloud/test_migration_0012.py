"""Migration 0012 (running_containers.organization_ids, pushed_digests) fills the copy from digest_organizations
and the pushed digests from pushes, matches the models and downgrades, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imagetrail.store.db import Base, make_engine
from imagetrail.store.migrate import upgrade
from tests.cloud.test_migration_0010 import INDEX, MANIFEST, OTHER, ROWS
from tests.support.migrations import downgrade

ALONE = "sha256:" + "9" * 64  # no organisation pushed it


def test_0012_fills_the_copies_matches_the_models_and_downgrades(database_url):
    engine = make_engine(database_url)
    containers = [("a", INDEX), ("b", MANIFEST), ("d", ALONE), ("e", None)]
    try:
        upgrade(engine, "0010")
        with engine.begin() as conn:
            for sql in ROWS:
                conn.exec_driver_sql(sql)
            conn.exec_driver_sql("INSERT INTO organizations (id, system, name) VALUES (3, 'github', 'contoso')")
            conn.exec_driver_sql("INSERT INTO digest_organizations (digest, organization_id) VALUES "
                                 f"('{INDEX}', 1), ('{MANIFEST}', 1), ('{OTHER}', 2), ('{INDEX}', 3)")
            conn.exec_driver_sql("INSERT INTO clusters (id, name, source, synced_at, pod_count, container_count, "
                                 "warnings) VALUES (1, 'prod', 'file', '2024-06-01 00:00:00', 4, 4, '[]')")
            for n, (pod, digest) in enumerate(containers, 1):
                conn.execute(sa.text(
                    "INSERT INTO running_containers (id, cluster_id, cluster_name, namespace, pod, workload_kind, "
                    "workload_name, container, container_kind, image, registry, repository, digest, exposed, "
                    "exposure) VALUES (:n, 1, 'prod', 'ns', :pod, 'Pod', :pod, 'main', 'container', 'r/a:1', "
                    "'r.example', 'a', :digest, false, '[]')"), {"n": n, "pod": pod, "digest": digest})
        upgrade(engine)
        with engine.connect() as conn:
            copied = dict(conn.exec_driver_sql("SELECT pod, organization_ids FROM running_containers").all())
            pushed = {(d, bool(r)) for d, r in conn.exec_driver_sql("SELECT digest, running FROM pushed_digests")}
            diff = [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                    if "organization_ids" in repr(d) or "pushed_digests" in repr(d)]
        assert {pod: sorted(v.strip(",").split(",")) if v.strip(",") else [] for pod, v in copied.items()} == {
            "a": ["1", "3"], "b": ["1"], "d": [], "e": []}
        # INDEX runs (pod a), OTHER runs nowhere; UNPUSHED (only a relation names it) is no pushed digest
        assert pushed == {(INDEX, True), (OTHER, False)}
        assert diff == []
        downgrade(engine, "0010")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("running_containers")}
            assert "organization_ids" not in columns
            assert "pushed_digests" not in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
