"""input bounds: a scan's content hash, so an identical scan sent again is recognised.

``image_scans.content_sha256`` is the SHA-256 of what a scan says about one image (scanner, its
versions, scan time, digests, findings); the unique index keeps a re-sent report from adding a
second copy to the digest's history. Scans stored before this revision have none (NULL) and are
left as they are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('image_scans') as batch:
        batch.add_column(sa.Column('content_sha256', sa.String(length=64), nullable=True))
    op.create_index('ux_image_scans_content_sha256', 'image_scans', ['content_sha256'], unique=True)


def downgrade() -> None:
    op.drop_index('ux_image_scans_content_sha256', table_name='image_scans')
    with op.batch_alter_table('image_scans') as batch:
        batch.drop_column('content_sha256')
