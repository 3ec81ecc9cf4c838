"""Cloud side: clusters and running containers, vulnerability scans and summaries, remediation items.

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('clusters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('collected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pod_count', sa.Integer(), nullable=False),
    sa.Column('container_count', sa.Integer(), nullable=False),
    sa.Column('warnings', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('image_scans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scanner', sa.String(length=32), nullable=False),
    sa.Column('scanner_version', sa.String(length=64), nullable=True),
    sa.Column('db_version', sa.String(length=128), nullable=True),
    sa.Column('scanned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('file_name', sa.String(length=1024), nullable=False),
    sa.Column('artifact', sa.String(length=1024), nullable=True),
    sa.Column('digests', sa.JSON(), nullable=False),
    sa.Column('finding_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_image_scans_scanned_at', 'image_scans', ['scanned_at'], unique=False)
    op.create_table('remediation_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('cve_set_hash', sa.String(length=64), nullable=False),
    sa.Column('cve_ids', sa.JSON(), nullable=False),
    sa.Column('organization', sa.String(length=255), nullable=False),
    sa.Column('project', sa.String(length=255), nullable=False),
    sa.Column('work_item_id', sa.Integer(), nullable=False),
    sa.Column('work_item_url', sa.String(length=1024), nullable=True),
    sa.Column('work_item_type', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest', 'cve_set_hash')
    )
    op.create_index('ix_remediation_items_digest', 'remediation_items', ['digest'], unique=False)
    op.create_table('running_containers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('cluster_name', sa.String(length=255), nullable=False),
    sa.Column('namespace', sa.String(length=255), nullable=False),
    sa.Column('pod', sa.String(length=255), nullable=False),
    sa.Column('workload_kind', sa.String(length=64), nullable=False),
    sa.Column('workload_name', sa.String(length=255), nullable=False),
    sa.Column('owner_note', sa.Text(), nullable=True),
    sa.Column('container', sa.String(length=255), nullable=False),
    sa.Column('container_kind', sa.String(length=16), nullable=False),
    sa.Column('image', sa.String(length=1024), nullable=False),
    sa.Column('registry', sa.String(length=255), nullable=False),
    sa.Column('repository', sa.String(length=512), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=True),
    sa.Column('digest_error', sa.Text(), nullable=True),
    sa.Column('exposed', sa.Boolean(), nullable=False),
    sa.Column('exposure', sa.JSON(), nullable=False),
    sa.Column('max_severity', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('critical_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('high_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('max_fixable_severity', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('scan_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_running_containers_registry_repository', 'running_containers',
                    ['registry', 'repository'], unique=False)
    op.create_index('ix_running_containers_scan_id', 'running_containers', ['scan_id'], unique=False)
    # One index per explorer sort order (leading key, then the row identity): pages are read in
    # index order, even deep ones, instead of sorting every container.
    identity = ['cluster_name', 'namespace', 'workload_name', 'pod', 'container', 'id']
    op.create_index('ix_running_containers_by_cluster', 'running_containers', identity, unique=False)
    for name, leading in (('namespace', 'namespace'), ('workload', 'workload_name'), ('image', 'image'),
                          ('digest', 'digest')):
        columns = [leading, *(c for c in identity if c != leading)]
        op.create_index(f'ix_running_containers_by_{name}', 'running_containers', columns, unique=False)
    op.create_index('ix_running_containers_by_severity', 'running_containers',
                    [sa.text('max_severity DESC'), sa.text('critical_count DESC'), sa.text('high_count DESC'),
                     *identity], unique=False)
    op.create_table('scan_digests',
    sa.Column('scan_id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.ForeignKeyConstraint(['scan_id'], ['image_scans.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('scan_id', 'digest')
    )
    op.create_index('ix_scan_digests_digest_scan', 'scan_digests', ['digest', 'scan_id'], unique=False)
    op.create_table('vulnerability_findings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scan_id', sa.Integer(), nullable=False),
    sa.Column('vulnerability_id', sa.String(length=128), nullable=False),
    sa.Column('package', sa.String(length=512), nullable=False),
    sa.Column('installed_version', sa.String(length=255), nullable=True),
    sa.Column('fixed_version', sa.String(length=512), nullable=True),
    sa.Column('severity', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['scan_id'], ['image_scans.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_findings_scan', 'vulnerability_findings', ['scan_id'], unique=False)
    op.create_index('ix_findings_vulnerability_scan', 'vulnerability_findings',
                    ['vulnerability_id', 'scan_id'], unique=False)
    op.create_table('vulnerability_summaries',
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('via_digest', sa.String(length=71), nullable=False),
    sa.Column('scan_id', sa.Integer(), nullable=False),
    sa.Column('scanned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('critical', sa.Integer(), nullable=False),
    sa.Column('high', sa.Integer(), nullable=False),
    sa.Column('medium', sa.Integer(), nullable=False),
    sa.Column('low', sa.Integer(), nullable=False),
    sa.Column('unknown', sa.Integer(), nullable=False),
    sa.Column('max_severity', sa.SmallInteger(), nullable=False),
    sa.Column('max_fixable_severity', sa.SmallInteger(), nullable=False),
    sa.Column('top', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['scan_id'], ['image_scans.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('digest')
    )
    op.create_index('ix_vulnerability_summaries_max', 'vulnerability_summaries', ['max_severity'],
                    unique=False)



def downgrade() -> None:
    op.drop_index('ix_vulnerability_summaries_max', table_name='vulnerability_summaries')

    op.drop_table('vulnerability_summaries')
    op.drop_index('ix_findings_vulnerability_scan', table_name='vulnerability_findings')
    op.drop_index('ix_findings_scan', table_name='vulnerability_findings')

    op.drop_table('vulnerability_findings')
    op.drop_index('ix_scan_digests_digest_scan', table_name='scan_digests')

    op.drop_table('scan_digests')
    for name in ('registry_repository', 'scan_id', 'by_cluster', 'by_namespace', 'by_workload', 'by_image',
                 'by_digest', 'by_severity'):
        op.drop_index(f'ix_running_containers_{name}', table_name='running_containers')

    op.drop_table('running_containers')
    op.drop_index('ix_remediation_items_digest', table_name='remediation_items')

    op.drop_table('remediation_items')
    op.drop_index('ix_image_scans_scanned_at', table_name='image_scans')

    op.drop_table('image_scans')
    op.drop_table('clusters')
