"""Stripe billing: customer map, meter map, the durable meter-event queue, invoice status from webhooks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 15:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "billing_customers",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("customer", sa.String(200), nullable=False),
        sa.Column("stripe_customer_id", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "customer", name=op.f("pk_billing_customers")),
    )
    op.create_table(
        "billing_meters",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("event_name", sa.String(100), nullable=False),
        sa.Column("measure", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), server_default="USD", nullable=False),
        sa.Column("unit_price", sa.String(40), nullable=True),
        sa.Column("stripe_meter_id", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "name", name=op.f("pk_billing_meters")),
    )
    op.create_table(
        "billing_events",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("customer", sa.String(200), nullable=False),
        sa.Column("meter", sa.String(100), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("identifier", sa.String(100), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_events")),
        sa.UniqueConstraint("identifier", name=op.f("uq_billing_events_identifier")),
        sa.UniqueConstraint("org_id", "customer", "meter", "hour", "version",
                            name=op.f("uq_billing_events_org_id_customer_meter_hour_version")),
    )
    op.create_index(op.f("ix_billing_events_status"), "billing_events", ["status"], unique=False)
    op.create_table(
        "billing_invoices",
        sa.Column("invoice_id", sa.String(100), nullable=False),
        sa.Column("stripe_customer_id", sa.String(100), nullable=True),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("amount_due", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("last_event_id", sa.String(100), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("invoice_id", name=op.f("pk_billing_invoices")),
    )


def downgrade() -> None:
    op.drop_table("billing_invoices")
    op.drop_index(op.f("ix_billing_events_status"), table_name="billing_events")
    op.drop_table("billing_events")
    op.drop_table("billing_meters")
    op.drop_table("billing_customers")
