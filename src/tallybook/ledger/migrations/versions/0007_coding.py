"""Coding tools: members and cycle spend tables; cost records gain a `user` dimension.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 15:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('coding_members',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('tool', sa.String(length=40), nullable=False),
    sa.Column('email', sa.String(length=300), nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=True),
    sa.Column('name', sa.String(length=300), nullable=True),
    sa.Column('role', sa.String(length=40), nullable=True),
    sa.Column('removed', sa.Boolean(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(), nullable=False),
    sa.Column('removed_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coding_members')),
    sa.UniqueConstraint('org_id', 'tool', 'email', name=op.f('uq_coding_members_org_id_tool_email'))
    )
    op.create_table('coding_cycle_spend',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('tool', sa.String(length=40), nullable=False),
    sa.Column('cycle_start', sa.DateTime(), nullable=False),
    sa.Column('email', sa.String(length=300), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=True),
    sa.Column('role', sa.String(length=40), nullable=True),
    sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False),
    sa.Column('spend_nanos', sa.BigInteger(), nullable=False),
    sa.Column('overall_spend_nanos', sa.BigInteger(), nullable=True),
    sa.Column('included_spend_nanos', sa.BigInteger(), nullable=True),
    sa.Column('fast_premium_requests', sa.BigInteger(), nullable=True),
    sa.Column('fetched_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coding_cycle_spend')),
    sa.UniqueConstraint('org_id', 'tool', 'cycle_start', 'email',
                        name=op.f('uq_coding_cycle_spend_org_id_tool_cycle_start_email'))
    )
    # Who a vendor charged, where it says so per person (coding tools): allocation by person reads it.
    with op.batch_alter_table('cost_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cost_records', schema=None) as batch_op:
        batch_op.drop_column('user')
    op.drop_table('coding_cycle_spend')
    op.drop_table('coding_members')
