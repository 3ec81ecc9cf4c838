"""summaries by severity: the vulnerability summaries worst first, for the explorer's images no cluster runs.

"Pushed, not running, high or worse" paged by joining every match (~60,000 of 1,000,000 pushed digests) and
sorting them for 50 rows: 180 ms of a 300 ms answer. Read from this index in page order, with a lookup in
``pushed_digests`` for each summary, the page stops at its last row (0.3 ms). Its leading column answers the
severity filters that ``ix_vulnerability_summaries_max`` answered, so that index goes.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_vulnerability_summaries_by_severity', 'vulnerability_summaries',
                    [sa.text('max_severity DESC'), sa.text('critical DESC'), sa.text('high DESC'), 'digest'],
                    unique=False)
    op.drop_index('ix_vulnerability_summaries_max', table_name='vulnerability_summaries')


def downgrade() -> None:
    op.create_index('ix_vulnerability_summaries_max', 'vulnerability_summaries', ['max_severity'], unique=False)
    op.drop_index('ix_vulnerability_summaries_by_severity', table_name='vulnerability_summaries')
