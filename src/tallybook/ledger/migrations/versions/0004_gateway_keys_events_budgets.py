"""gateway keys events budgets

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 13:07:23.020980
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('budget_spend',
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=240), nullable=False),
    sa.Column('period_start', sa.DateTime(), nullable=False),
    sa.Column('spent_nanos', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('reserved_nanos', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'scope', 'period_start', name=op.f('pk_budget_spend'))
    )
    op.create_table('provider_credentials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('base_url', sa.String(length=500), nullable=False),
    sa.Column('secret_sealed', sa.Text(), nullable=True),
    sa.Column('key_fingerprint', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_credentials')),
    sa.UniqueConstraint('org_id', 'provider', name=op.f('uq_provider_credentials_org_id_provider'))
    )
    op.create_table('usage_events',
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('ts', sa.DateTime(), nullable=False),
    sa.Column('virtual_key', sa.String(length=32), nullable=True),
    sa.Column('customer', sa.String(length=200), nullable=True),
    sa.Column('feature', sa.String(length=200), nullable=True),
    sa.Column('business_unit', sa.String(length=200), nullable=True),
    sa.Column('tags', sa.Text(), nullable=True),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('endpoint', sa.String(length=60), nullable=False),
    sa.Column('streamed', sa.Boolean(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('input_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('cache_read_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('cache_write_5m_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('cache_write_1h_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('reasoning_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('audio_input_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('audio_output_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('gpu_seconds', sa.String(length=40), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('usage_origin', sa.String(length=12), nullable=False),
    sa.Column('list_cost_nanos', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False),
    sa.Column('price_version', sa.String(length=120), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('upstream_request_id', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_usage_events'))
    )
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usage_events_org_id_ts'), ['org_id', 'ts'], unique=False)

    op.create_table('virtual_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_hint', sa.String(length=40), nullable=False),
    sa.Column('customer', sa.String(length=200), nullable=True),
    sa.Column('feature', sa.String(length=200), nullable=True),
    sa.Column('business_unit', sa.String(length=200), nullable=True),
    sa.Column('budget', sa.String(length=40), nullable=True),
    sa.Column('budget_currency', sa.String(length=3), server_default='USD', nullable=False),
    sa.Column('budget_period', sa.String(length=10), nullable=True),
    sa.Column('rpm', sa.Integer(), nullable=True),
    sa.Column('tpm', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), server_default='active', nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_virtual_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_virtual_keys_key_hash'))
    )
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('virtual_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('customer', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('feature', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('business_unit', sa.String(length=200), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_column('business_unit')
        batch_op.drop_column('feature')
        batch_op.drop_column('customer')
        batch_op.drop_column('virtual_key')

    op.drop_table('virtual_keys')
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usage_events_org_id_ts'))

    op.drop_table('usage_events')
    op.drop_table('provider_credentials')
    op.drop_table('budget_spend')
