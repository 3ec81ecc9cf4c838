"""container organisations index: a reader's count of running containers reads the organisation copy alone.

An organisation-scoped reader's unfiltered explorer page counted its containers by reading every row of
``running_containers`` for ``organization_ids``, the last column of wide rows: 36 ms of a 95 ms page at 100,000
containers. The explorer now sums one count per visibility part (``container_condition_parts``); the filled
copy's part reads this index alone (an index-only scan, 6 ms). A column with a handful of distinct values
deduplicates, so the index stays under 5 MB for 100,000 rows after two sync-like rewrites (0013's attempt
carried ``digest`` too, which turns deduplication off: 10 MB, then 37 MB, and the planner left it).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""
from __future__ import annotations

from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_running_containers_organization_ids', 'running_containers', ['organization_ids'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_running_containers_organization_ids', table_name='running_containers')
