"""Identity map (versioned person/team/cost-centre assignments), seat plans and seat assignments, CSV import runs (the coding-tools issue).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 15:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('identity_map',
    sa.Column('id', RowId, nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('match_value', sa.String(length=300), nullable=False),
    sa.Column('person', sa.String(length=200), nullable=True),
    sa.Column('team', sa.String(length=200), nullable=True),
    sa.Column('cost_centre', sa.String(length=100), nullable=True),
    sa.Column('effective_from', sa.DateTime(), nullable=False),
    sa.Column('effective_to', sa.DateTime(), nullable=True),
    sa.Column('source_file', sa.String(length=300), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_map')),
    sa.UniqueConstraint('org_id', 'kind', 'match_value', 'effective_from',
                        name=op.f('uq_identity_map_org_id_kind_match_value_effective_from'))
    )
    op.create_table('seat_plans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('platform', sa.String(length=40), nullable=False),
    sa.Column('plan', sa.String(length=60), nullable=False),
    sa.Column('price_nanos', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('period', sa.String(length=10), nullable=False),
    sa.Column('effective_from', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seat_plans')),
    sa.UniqueConstraint('org_id', 'platform', 'plan', 'effective_from',
                        name=op.f('uq_seat_plans_org_id_platform_plan_effective_from'))
    )
    op.create_table('seat_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('platform', sa.String(length=40), nullable=False),
    sa.Column('plan', sa.String(length=60), nullable=False),
    sa.Column('email', sa.String(length=300), nullable=False),
    sa.Column('assigned_from', sa.DateTime(), nullable=False),
    sa.Column('assigned_to', sa.DateTime(), nullable=True),
    sa.Column('origin', sa.String(length=20), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seat_assignments')),
    sa.UniqueConstraint('org_id', 'platform', 'email', 'assigned_from',
                        name=op.f('uq_seat_assignments_org_id_platform_email_assigned_from'))
    )
    op.create_table('import_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=60), nullable=False),
    sa.Column('mapping', sa.String(length=100), nullable=False),
    sa.Column('file_name', sa.String(length=300), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('first_day', sa.DateTime(), nullable=True),
    sa.Column('last_day', sa.DateTime(), nullable=True),
    sa.Column('totals', sa.Text(), nullable=False),
    sa.Column('imported_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_runs'))
    )
    op.create_index(op.f('ix_import_runs_org_id_source'), 'import_runs', ['org_id', 'source'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_import_runs_org_id_source'), table_name='import_runs')
    op.drop_table('import_runs')
    op.drop_table('seat_assignments')
    op.drop_table('seat_plans')
    op.drop_table('identity_map')
