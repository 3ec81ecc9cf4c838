"""owners and trackers: which tracker holds a remediation item, and the pipeline that built its image.

``remediation_items.tracker`` is ``azure-devops`` (work items; every item stored before this
revision) or ``github`` (issues; ``project`` is then ``owner/repo`` and ``work_item_id`` the issue
number). ``pipeline_id`` and ``image_repository`` name the pipeline and the image repository the item
was filed for, so a newer push of the same pipeline and repository can suggest closing it (NULL for
items stored before).

``run_owners``: a run's owners in order, each with its source (codeowners | commit-author |
team-mapping | requester), the rule or team it came from, and how it is known (evidence).

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('remediation_items') as batch:
        batch.add_column(sa.Column('tracker', sa.String(length=32), nullable=False, server_default='azure-devops'))
        batch.add_column(sa.Column('pipeline_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('image_repository', sa.String(length=1024), nullable=True))
    op.create_index('ix_remediation_items_pipeline_id', 'remediation_items', ['pipeline_id'], unique=False)
    op.create_table('run_owners',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('login', sa.String(length=255), nullable=True),
    sa.Column('detail', sa.String(length=1024), nullable=True),
    sa.Column('evidence', sa.String(length=16), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'position')
    )
    op.create_index('ix_run_owners_run_id', 'run_owners', ['run_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_run_owners_run_id', table_name='run_owners')
    op.drop_table('run_owners')
    op.drop_index('ix_remediation_items_pipeline_id', table_name='remediation_items')
    with op.batch_alter_table('remediation_items') as batch:
        batch.drop_column('image_repository')
        batch.drop_column('pipeline_id')
        batch.drop_column('tracker')
