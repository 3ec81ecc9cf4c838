"""Registry events: pushes registries notify or a sync observes, the digests awaiting attribution, and
the facts (labels, provenance) each pushed image states about its origin.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('registry_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('format', sa.String(length=32), nullable=False),
    sa.Column('registry', sa.String(length=255), nullable=False),
    sa.Column('repository', sa.String(length=512), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('media_type', sa.String(length=255), nullable=True),
    sa.Column('actor', sa.String(length=255), nullable=True),
    sa.Column('source_addr', sa.String(length=255), nullable=True),
    sa.Column('user_agent', sa.String(length=1024), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_by', sa.String(length=512), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('registry', 'event_id')
    )
    op.create_index('ix_registry_events_digest', 'registry_events', ['digest'], unique=False)
    op.create_index('ix_registry_events_reference', 'registry_events', ['registry', 'repository', 'tag'],
                    unique=False)
    op.create_index('ix_registry_events_occurred_at', 'registry_events', ['occurred_at'], unique=False)
    op.create_table('registry_artifacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('registry', sa.String(length=255), nullable=False),
    sa.Column('repository', sa.String(length=512), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('registry', 'repository', 'digest')
    )
    op.create_index('ix_registry_artifacts_digest', 'registry_artifacts', ['digest'], unique=False)
    op.create_index('ix_registry_artifacts_status', 'registry_artifacts', ['status', 'next_attempt_at'],
                    unique=False)
    op.create_table('registry_attributions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('registry', sa.String(length=255), nullable=False),
    sa.Column('repository', sa.String(length=512), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('evidence', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('run_id', sa.String(length=255), nullable=True),
    sa.Column('commit', sa.String(length=64), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest', 'kind', 'source')
    )
    op.create_index('ix_registry_attributions_digest', 'registry_attributions', ['digest'], unique=False)
    op.create_index('ix_registry_attributions_run_id', 'registry_attributions', ['run_id'], unique=False)
    op.create_index('ix_registry_attributions_commit', 'registry_attributions', ['commit'], unique=False)


def downgrade() -> None:
    for name in ('digest', 'run_id', 'commit'):
        op.drop_index(f'ix_registry_attributions_{name}', table_name='registry_attributions')
    op.drop_table('registry_attributions')
    op.drop_index('ix_registry_artifacts_status', table_name='registry_artifacts')
    op.drop_index('ix_registry_artifacts_digest', table_name='registry_artifacts')
    op.drop_table('registry_artifacts')
    for name in ('digest', 'reference', 'occurred_at'):
        op.drop_index(f'ix_registry_events_{name}', table_name='registry_events')
    op.drop_table('registry_events')
