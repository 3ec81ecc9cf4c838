"""drop covered indexes: five single-column indexes that repeat the first column of a unique constraint.

Each unique constraint is itself an index whose leading column answers every lookup the single-column index
answered (the push rows of a report, the jobs of a run, the runs of a pipeline, a run's fact statements, the
platform manifests of an index). The copies only cost writes: every stored report updated three of them, for
each push, job and statement.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""
from __future__ import annotations

from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

# (index, table, column); the unique constraint that covers each starts with the same column
COVERED = [
    ('ix_pushes_report_id', 'pushes', 'report_id'),
    ('ix_jobs_run_id', 'jobs', 'run_id'),
    ('ix_runs_pipeline_id', 'runs', 'pipeline_id'),
    ('ix_fact_statements_run_id', 'fact_statements', 'run_id'),
    ('ix_image_relations_index_digest', 'image_relations', 'index_digest'),
]


def upgrade() -> None:
    for index, table, _ in COVERED:
        op.drop_index(index, table_name=table)


def downgrade() -> None:
    for index, table, column in COVERED:
        op.create_index(index, table, [column], unique=False)
