"""evidence: how each fact of a run is known (verified / claimed / disputed) and who stated it.

Adds ``runs.{repository,branch,commit,requester}_evidence``, ``reports.evidence`` (how the run a
report names is known) and ``fact_statements``. Facts
stored before evidence existed become ``claimed`` statements of credential kind ``legacy``,
so a later report can dispute them but never silently replace them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

FACTS = ("repository", "branch", "commit", "requester")


def upgrade() -> None:
    op.add_column('reports', sa.Column('evidence', sa.JSON(), nullable=True))
    for fact in FACTS:
        op.add_column('runs', sa.Column(f'{fact}_evidence', sa.String(length=16), nullable=True))
    op.create_table('fact_statements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('fact', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=1024), nullable=False),
    sa.Column('ref_id', sa.Integer(), nullable=True),
    sa.Column('evidence', sa.String(length=16), nullable=False),
    sa.Column('credential_kind', sa.String(length=32), nullable=False),
    sa.Column('credential_id', sa.String(length=512), nullable=False),
    sa.Column('report_id', sa.String(length=71), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'fact', 'value', 'credential_kind', 'credential_id')
    )
    op.create_index(op.f('ix_fact_statements_run_id'), 'fact_statements', ['run_id'], unique=False)
    _backfill()


def _backfill() -> None:
    runs = sa.table('runs', sa.column('id'), sa.column('repository_id'), sa.column('branch'), sa.column('commit'),
                    sa.column('requester_id'), *(sa.column(f'{f}_evidence') for f in FACTS))
    repositories = sa.table('repositories', sa.column('id'), sa.column('uri'))
    people = sa.table('people', sa.column('id'), sa.column('key'))
    statements = sa.table('fact_statements', *(sa.column(c) for c in (
        'run_id', 'fact', 'value', 'ref_id', 'evidence', 'credential_kind', 'credential_id', 'recorded_at')))
    now = sa.func.current_timestamp()

    def legacy(fact, value, ref_id, source):
        columns = [runs.c.id, sa.literal(fact), value, ref_id, sa.literal('claimed'), sa.literal('legacy'),
                   sa.literal('recorded before evidence'), now]
        query = sa.select(*columns)
        query = query.select_from(source) if source is not None else query.where(value.is_not(None))
        op.execute(statements.insert().from_select(list(statements.c), query))

    legacy('repository', repositories.c.uri, repositories.c.id,
           runs.join(repositories, repositories.c.id == runs.c.repository_id))
    legacy('branch', runs.c.branch, sa.null(), None)
    legacy('commit', runs.c.commit, sa.null(), None)
    legacy('requester', people.c.key, people.c.id, runs.join(people, people.c.id == runs.c.requester_id))
    for fact, column in (('repository', runs.c.repository_id), ('branch', runs.c.branch),
                         ('commit', runs.c.commit), ('requester', runs.c.requester_id)):
        op.execute(runs.update().where(column.is_not(None)).values({f'{fact}_evidence': 'claimed'}))


def downgrade() -> None:
    op.drop_index(op.f('ix_fact_statements_run_id'), table_name='fact_statements')
    op.drop_table('fact_statements')
    with op.batch_alter_table('runs') as batch:
        for fact in FACTS:
            batch.drop_column(f'{fact}_evidence')
    with op.batch_alter_table('reports') as batch:
        batch.drop_column('evidence')
