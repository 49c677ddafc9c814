"""initial ledger

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 12:13:05.390739
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cost_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), server_default='0', nullable=False),
    sa.Column('source', sa.String(length=60), nullable=False),
    sa.Column('stream', sa.String(length=60), nullable=False),
    sa.Column('bucket_start', sa.DateTime(), nullable=False),
    sa.Column('bucket_width', sa.String(length=4), nullable=False),
    sa.Column('record_key', sa.String(length=32), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('project', sa.String(length=200), nullable=True),
    sa.Column('api_key', sa.String(length=200), nullable=True),
    sa.Column('line_item', sa.String(length=300), nullable=True),
    sa.Column('token_type', sa.String(length=80), nullable=True),
    sa.Column('cost_type', sa.String(length=40), nullable=True),
    sa.Column('service_tier', sa.String(length=40), nullable=True),
    sa.Column('context_window', sa.String(length=20), nullable=True),
    sa.Column('inference_geo', sa.String(length=40), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount_nanos', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.String(length=40), nullable=True),
    sa.Column('quantity_unit', sa.String(length=40), nullable=True),
    sa.Column('origin', sa.String(length=12), server_default='reported', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cost_records')),
    sa.UniqueConstraint('org_id', 'connection_id', 'source', 'stream', 'bucket_width', 'bucket_start', 'record_key', name='uq_cost_records_natural_key')
    )
    with op.batch_alter_table('cost_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cost_records_org_id_bucket_width_bucket_start'), ['org_id', 'bucket_width', 'bucket_start'], unique=False)

    op.create_table('organisations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisations')),
    sa.UniqueConstraint('slug', name=op.f('uq_organisations_slug'))
    )
    op.create_table('provider_objects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), server_default='0', nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('object_id', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=True),
    sa.Column('email', sa.String(length=300), nullable=True),
    sa.Column('parent_id', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=40), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_objects')),
    sa.UniqueConstraint('org_id', 'provider', 'kind', 'object_id', name=op.f('uq_provider_objects_org_id_provider_kind_object_id'))
    )
    op.create_table('sync_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('window_start', sa.DateTime(), nullable=False),
    sa.Column('window_end', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('tasks_total', sa.Integer(), server_default='0', nullable=False),
    sa.Column('tasks_done', sa.Integer(), server_default='0', nullable=False),
    sa.Column('pages', sa.Integer(), server_default='0', nullable=False),
    sa.Column('rows', sa.Integer(), server_default='0', nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_runs'))
    )
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_runs_connection_id_started_at'), ['connection_id', 'started_at'], unique=False)

    op.create_table('usage_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), server_default='0', nullable=False),
    sa.Column('source', sa.String(length=60), nullable=False),
    sa.Column('stream', sa.String(length=60), nullable=False),
    sa.Column('bucket_start', sa.DateTime(), nullable=False),
    sa.Column('bucket_width', sa.String(length=4), nullable=False),
    sa.Column('record_key', sa.String(length=32), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('project', sa.String(length=200), nullable=True),
    sa.Column('api_key', sa.String(length=200), nullable=True),
    sa.Column('user', sa.String(length=200), nullable=True),
    sa.Column('service_tier', sa.String(length=40), nullable=True),
    sa.Column('batch', sa.Boolean(), nullable=True),
    sa.Column('context_window', sa.String(length=20), nullable=True),
    sa.Column('inference_geo', sa.String(length=40), nullable=True),
    sa.Column('detail', sa.String(length=200), nullable=True),
    sa.Column('unit', sa.String(length=40), nullable=True),
    sa.Column('input_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('cache_read_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('cache_write_5m_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('cache_write_1h_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('reasoning_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('audio_input_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('audio_output_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('requests', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('quantity', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('origin', sa.String(length=12), server_default='reported', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_records')),
    sa.UniqueConstraint('org_id', 'connection_id', 'source', 'stream', 'bucket_width', 'bucket_start', 'record_key', name='uq_usage_records_natural_key')
    )
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usage_records_org_id_bucket_width_bucket_start'), ['org_id', 'bucket_width', 'bucket_start'], unique=False)

    op.create_table('connections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('base_url', sa.String(length=500), nullable=False),
    sa.Column('secret_sealed', sa.Text(), nullable=False),
    sa.Column('key_fingerprint', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='active', nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('rotated_at', sa.DateTime(), nullable=True),
    sa.Column('last_sync_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_connections_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connections')),
    sa.UniqueConstraint('org_id', 'name', name=op.f('uq_connections_org_id_name'))
    )
    op.create_table('sync_tasks',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.String(length=200), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('pages', sa.Integer(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['sync_runs.id'], name=op.f('fk_sync_tasks_run_id_sync_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'task_id', name=op.f('pk_sync_tasks'))
    )


def downgrade() -> None:
    op.drop_table('sync_tasks')
    op.drop_table('connections')
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usage_records_org_id_bucket_width_bucket_start'))

    op.drop_table('usage_records')
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_runs_connection_id_started_at'))

    op.drop_table('sync_runs')
    op.drop_table('provider_objects')
    op.drop_table('organisations')
    with op.batch_alter_table('cost_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cost_records_org_id_bucket_width_bucket_start'))

    op.drop_table('cost_records')
