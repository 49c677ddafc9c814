"""Alert rules, channels and deliveries, deduplicated per rule, channel and period (the alerts issue).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 15:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_channels",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("config_sealed", sa.Text(), nullable=False),
        sa.Column("target_hint", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_channels")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_alert_channels_org_id_name")),
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("scope", sa.String(240), server_default="org", nullable=False),
        sa.Column("period", sa.String(10), server_default="month", nullable=False),
        sa.Column("amount", sa.String(40), nullable=True),
        sa.Column("currency", sa.String(3), server_default="USD", nullable=False),
        sa.Column("thresholds", sa.String(100), server_default="100", nullable=False),
        sa.Column("channels", sa.String(400), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_alert_rules_org_id_name")),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("dedup_key", sa.String(240), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint("org_id", "rule_id", "channel", "dedup_key",
                            name=op.f("uq_alert_deliveries_org_id_rule_id_channel_dedup_key")),
    )
    op.create_index(op.f("ix_alert_deliveries_status_next_attempt_at"), "alert_deliveries",
                    ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_deliveries_status_next_attempt_at"), table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_table("alert_rules")
    op.drop_table("alert_channels")
