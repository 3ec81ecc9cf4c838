"""trace page order: the push indexes end with the id, the tie-break of the trace's (pushed_at, id) order.

With (digest, pushed_at) alone, a page of a busy digest or tag was ordered by a sort over every push older
than the cursor whenever PostgreSQL used a generic plan (which estimates one row and so does not bother with
an incremental sort): 180 ms for the second page of a digest pushed 2,449 times. With the id in the index
the rows come out in page order and the LIMIT stops the scan.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""
from __future__ import annotations

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_pushes_digest_pushed_at_id', 'pushes', ['digest', 'pushed_at', 'id'], unique=False)
    op.drop_index('ix_pushes_digest_pushed_at', table_name='pushes')
    op.create_index('ix_pushes_reference_id_pushed_at_id', 'pushes', ['reference_id', 'pushed_at', 'id'],
                    unique=False)
    op.drop_index('ix_pushes_reference_id_pushed_at', table_name='pushes')


def downgrade() -> None:
    op.create_index('ix_pushes_reference_id_pushed_at', 'pushes', ['reference_id', 'pushed_at'], unique=False)
    op.drop_index('ix_pushes_reference_id_pushed_at_id', table_name='pushes')
    op.create_index('ix_pushes_digest_pushed_at', 'pushes', ['digest', 'pushed_at'], unique=False)
    op.drop_index('ix_pushes_digest_pushed_at_id', table_name='pushes')
