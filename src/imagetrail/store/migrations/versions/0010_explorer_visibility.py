"""explorer visibility: which organisations pushed each digest (or its index / platform relatives).

``digest_organizations`` holds one row per (digest, organisation) for every digest a run of that
organisation pushed, and for the platform manifests / image indexes one relation hop away. Report and
relation ingest keep it up to date (``imagetrail.ingest.digest_organizations``); a reader limited to some
organisations then filters running containers by one indexed lookup instead of joining up from every push.
Filled here from the pushes and relations already stored.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# Pushes up to the project that names the organisation (the same rows ingest writes).
_PUSHED_BY = """
    FROM pushes p
    JOIN jobs j ON j.id = p.job_id
    JOIN runs r ON r.id = j.run_id
    JOIN pipelines pl ON pl.id = r.pipeline_id
    JOIN projects pr ON pr.id = pl.project_id"""


def upgrade() -> None:
    op.create_table('digest_organizations',
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ),
    sa.PrimaryKeyConstraint('digest', 'organization_id')
    )
    op.create_index('ix_digest_organizations_organization_digest', 'digest_organizations',
                    ['organization_id', 'digest'], unique=False)
    op.execute(f"""
        INSERT INTO digest_organizations (digest, organization_id)
        SELECT p.digest, pr.organization_id {_PUSHED_BY} WHERE p.digest IS NOT NULL
        UNION SELECT ir.manifest_digest, pr.organization_id {_PUSHED_BY}
            JOIN image_relations ir ON ir.index_digest = p.digest
        UNION SELECT ir.index_digest, pr.organization_id {_PUSHED_BY}
            JOIN image_relations ir ON ir.manifest_digest = p.digest""")


def downgrade() -> None:
    op.drop_index('ix_digest_organizations_organization_digest', table_name='digest_organizations')
    op.drop_table('digest_organizations')
