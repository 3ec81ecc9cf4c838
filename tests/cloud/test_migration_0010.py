"""Migration 0010 (digest_organizations) fills the table from stored pushes and relations, matches the models
and downgrades, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imagetrail.store.db import Base, make_engine
from imagetrail.store.migrate import upgrade
from tests.support.migrations import downgrade

INDEX, MANIFEST, OTHER, UNPUSHED = (f"sha256:{n:064x}" for n in (1, 2, 3, 4))

ROWS = [
    "INSERT INTO organizations (id, system, name) "
    "VALUES (1, 'azure-devops', 'contoso'), (2, 'github', 'fabrikam')",
    "INSERT INTO projects (id, organization_id, name) VALUES (1, 1, 'shop'), (2, 2, 'pay')",
    "INSERT INTO pipelines (id, project_id, external_id) VALUES (1, 1, '7'), (2, 2, '8')",
    "INSERT INTO runs (id, pipeline_id, external_id, attempt) VALUES (1, 1, '101', 1), (2, 2, '202', 1)",
    "INSERT INTO jobs (id, run_id, external_id, attempt) VALUES (1, 1, 'j', 1), (2, 2, 'j', 1)",
    "INSERT INTO reports (id, schema_version, received_at, identity_kind, identity_subject, job_id, body) "
    "VALUES ('r1', '1.0', '2024-06-01 00:00:00', 'api-key', 't', 1, '{}'), "
    "('r2', '1.0', '2024-06-01 00:00:00', 'api-key', 't', 2, '{}')",
    f"INSERT INTO images (digest, first_seen_at) VALUES ('{INDEX}', '2024-06-01 00:00:00'), "
    f"('{OTHER}', '2024-06-01 00:00:00')",
    "INSERT INTO image_references (id, registry, repository, tag) VALUES (1, 'r.example', 'a', '1')",
    f"INSERT INTO pushes (id, report_id, job_id, reference_id, digest, reference, labels) VALUES "
    f"(1, 'r1', 1, 1, '{INDEX}', 'r.example/a:1', '{{}}'), "
    f"(2, 'r2', 2, 1, '{OTHER}', 'r.example/a:1', '{{}}'), "
    f"(3, 'r2', 2, 1, NULL, 'r.example/a:2', '{{}}')",
    f"INSERT INTO image_relations (index_digest, manifest_digest, source, recorded_at) VALUES "
    f"('{INDEX}', '{MANIFEST}', 'collector', '2024-06-01 00:00:00'), "
    f"('{UNPUSHED}', '{OTHER}', 'registry', '2024-06-01 00:00:00')",
]


def test_0010_fills_from_stored_pushes_matches_the_models_and_downgrades(database_url):
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0009")
        with engine.begin() as conn:
            for sql in ROWS:
                conn.exec_driver_sql(sql)
        upgrade(engine)
        with engine.connect() as conn:
            rows = set(conn.exec_driver_sql("SELECT digest, organization_id FROM digest_organizations").all())
            diff = [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                    if "digest_organizations" in repr(d)]
        # Pushed digests and one relation hop each way; the NULL digest of a failed push is no row.
        assert rows == {(INDEX, 1), (MANIFEST, 1), (OTHER, 2), (UNPUSHED, 2)}
        assert diff == []
        downgrade(engine, "0009")
        with engine.connect() as conn:
            assert "digest_organizations" not in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
