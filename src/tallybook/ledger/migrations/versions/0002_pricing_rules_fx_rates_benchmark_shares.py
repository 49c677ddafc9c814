"""pricing rules fx rates benchmark shares

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:22:16.338875
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('benchmark_shares',
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('tier', sa.String(length=20), nullable=False),
    sa.Column('blended_rate', sa.String(length=40), nullable=False),
    sa.Column('shared_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'month', 'tier', name=op.f('pk_benchmark_shares'))
    )
    op.create_table('fx_rates',
    sa.Column('day', sa.DateTime(), nullable=False),
    sa.Column('base', sa.String(length=3), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('rate', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=40), server_default='ecb', nullable=False),
    sa.PrimaryKeyConstraint('day', 'base', 'currency', name=op.f('pk_fx_rates'))
    )
    op.create_table('org_settings',
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'key', name=op.f('pk_org_settings'))
    )
    op.create_table('pricing_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=True),
    sa.Column('model_pattern', sa.String(length=200), server_default='*', nullable=False),
    sa.Column('spec', sa.Text(), nullable=False),
    sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False),
    sa.Column('effective_from', sa.DateTime(), nullable=False),
    sa.Column('effective_to', sa.DateTime(), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('retired_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pricing_rules')),
    sa.UniqueConstraint('org_id', 'rule_id', 'version', name=op.f('uq_pricing_rules_org_id_rule_id_version'))
    )


def downgrade() -> None:
    op.drop_table('pricing_rules')
    op.drop_table('org_settings')
    op.drop_table('fx_rates')
    op.drop_table('benchmark_shares')
