"""explorer speed: running_containers.organization_ids copies digest_organizations; pushed_digests.

``organization_ids`` holds the ids of the organisations that pushed the container's digest (or a relative of it)
as ``,1,7,`` (``,`` for none), so an organisation-scoped reader filters running containers on a column instead
of looking each candidate up in ``digest_organizations``. NULL means "not filled yet" and is read through that
lookup (``imagetrail.queries.visibility.container_condition_parts``); kept by ``imagetrail.ingest.digest_organizations``.

``pushed_digests`` holds each pushed digest once with whether a cluster runs it (NULL: not known yet, checked by
the reader), so images no cluster runs are counted without checking every push against the running containers.
Filled here from the rows already stored.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('running_containers', sa.Column('organization_ids', sa.Text(), nullable=True))
    postgres = op.get_bind().dialect.name == "postgresql"
    joined = "string_agg(d.organization_id::text, ',')" if postgres else "group_concat(d.organization_id, ',')"
    op.execute(f"""
        UPDATE running_containers SET organization_ids = ',' || coalesce(
            (SELECT {joined} || ',' FROM digest_organizations d WHERE d.digest = running_containers.digest), '')""")
    op.create_table('pushed_digests',
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('running', sa.Boolean(), nullable=True),
    sa.PrimaryKeyConstraint('digest')
    )
    op.create_index('ix_pushed_digests_running_digest', 'pushed_digests', ['running', 'digest'], unique=False)
    # Filled set-based here (a NULL row would be filled by the first sync, one lookup per row under its lock).
    op.execute("INSERT INTO pushed_digests (digest, running) "
               "SELECT DISTINCT digest, false FROM pushes WHERE digest IS NOT NULL")
    op.execute("""
        UPDATE pushed_digests SET running = true WHERE digest IN (
            SELECT digest FROM running_containers
            UNION SELECT r.index_digest FROM image_relations r JOIN running_containers c ON c.digest = r.manifest_digest
            UNION SELECT r.manifest_digest FROM image_relations r JOIN running_containers c ON c.digest = r.index_digest)""")


def downgrade() -> None:
    op.drop_index('ix_pushed_digests_running_digest', table_name='pushed_digests')
    op.drop_table('pushed_digests')
    with op.batch_alter_table('running_containers') as batch:
        batch.drop_column('organization_ids')
