"""Tables: Stripe billing: which Stripe customer each tallybook customer is, which Stripe meter each
measure goes to, the durable queue of hourly meter events (and their corrections), and invoice status
from Stripe's webhooks.

They live on the ledger's one `metadata` (see schema.py, which imports this module last)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Table, UniqueConstraint

from tallybook.ledger.schema import RowId, metadata

billing_customers = Table(
    "billing_customers",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("customer", String(200), primary_key=True),  # the gateway's customer attribution
    Column("stripe_customer_id", String(100), nullable=False),  # cus_...
    Column("created_at", DateTime, nullable=False),
)

billing_meters = Table(
    "billing_meters",
    metadata,
    Column("org_id", Integer, primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("event_name", String(100), nullable=False),  # the Stripe meter's event_name
    # cost_micros (customer price in millionths of `currency`) | input_tokens | output_tokens |
    # cache_read_tokens | total_tokens | requests
    Column("measure", String(40), nullable=False),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("unit_price", String(40)),  # decimal text: the Stripe price per unit, for previews
    Column("stripe_meter_id", String(100)),  # mtr_..., when created or found
    Column("created_at", DateTime, nullable=False),
)

billing_events = Table(
    "billing_events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("org_id", Integer, nullable=False),
    Column("customer", String(200), nullable=False),
    Column("meter", String(100), nullable=False),
    Column("hour", DateTime, nullable=False),  # UTC start of the hour the usage is in
    Column("version", Integer, nullable=False),  # 1, then +1 for each correction
    Column("identifier", String(100), nullable=False, unique=True),  # deterministic: a retry is a no-op
    Column("value", BigInteger, nullable=False),
    # pending -> sent; sent -> cancel_pending -> cancelled (superseded by the next version);
    # failed: Stripe refused it for good (last_error says why)
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(500)),
    Column("created_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
    UniqueConstraint("org_id", "customer", "meter", "hour", "version"),
    Index(None, "status"),
)

billing_invoices = Table(
    "billing_invoices",
    metadata,
    Column("invoice_id", String(100), primary_key=True),  # in_...
    Column("stripe_customer_id", String(100)),
    Column("status", String(30), nullable=False),  # paid | payment_failed | finalized | ...
    Column("amount_due", BigInteger),  # in the currency's minor unit, as Stripe sends it
    Column("currency", String(3)),
    Column("last_event_id", String(100), nullable=False),  # evt_...: a redelivered webhook changes nothing
    Column("updated_at", DateTime, nullable=False),
)
