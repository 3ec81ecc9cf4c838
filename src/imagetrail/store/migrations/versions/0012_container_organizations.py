"""explorer visibility on the container: running_containers.organization_ids copies digest_organizations.

``organization_ids`` holds the ids of the organisations that pushed the container's digest (or a relative of it)
as ``,1,7,`` (``,`` for none), so an organisation-scoped reader filters running containers on a column instead
of looking each candidate up in ``digest_organizations``. NULL means "not filled yet" and is read through that
lookup (``imagetrail.queries.visibility.container_condition``); kept by ``imagetrail.ingest.digest_organizations``.
Filled here from the rows already stored.

Revision ID: 0012
Revises: 0010
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('running_containers', sa.Column('organization_ids', sa.Text(), nullable=True))
    postgres = op.get_bind().dialect.name == "postgresql"
    joined = "string_agg(d.organization_id::text, ',')" if postgres else "group_concat(d.organization_id, ',')"
    op.execute(f"""
        UPDATE running_containers SET organization_ids = ',' || coalesce(
            (SELECT {joined} || ',' FROM digest_organizations d WHERE d.digest = running_containers.digest), '')""")


def downgrade() -> None:
    with op.batch_alter_table('running_containers') as batch:
        batch.drop_column('organization_ids')
