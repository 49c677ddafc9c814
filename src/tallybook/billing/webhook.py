"""Stripe's webhook: the `Stripe-Signature` header verified with the endpoint's signing secret (the
SDK's own check, with its 5-minute tolerance), then invoice paid / payment failed / finalized / voided
recorded per invoice. A redelivered event changes nothing; events of other types are acknowledged."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import stripe
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tallybook.errors import BillingError
from tallybook.ledger import schema_billing as tb

STATUSES = {"invoice.paid": "paid", "invoice.payment_failed": "payment_failed", "invoice.finalized": "finalized",
            "invoice.voided": "voided", "invoice.marked_uncollectible": "uncollectible"}


class BadSignature(BillingError):
    status = 400


def handle(engine: Engine, payload: bytes, signature: str | None, secret: str | None) -> str:
    """Verify and record one webhook delivery; returns what was done. Raises BadSignature."""
    if not secret:
        raise BillingError("TALLYBOOK_STRIPE_WEBHOOK_SECRET is not set: cannot verify Stripe webhooks.")
    if not signature:
        raise BadSignature("Missing Stripe-Signature header.")
    try:
        stripe.Webhook.construct_event(payload.decode("utf-8", "replace"), signature, secret)
    except stripe.SignatureVerificationError:
        raise BadSignature("Stripe-Signature does not match the payload (wrong secret, altered body or too old).") from None
    except ValueError:
        raise BadSignature("The payload is not a Stripe event.") from None
    event = json.loads(payload)  # verified above; plain data from here on
    status = STATUSES.get(event["type"])
    if status is None:
        return f"ignored {event['type']}"
    invoice = event["data"]["object"]
    values = {"invoice_id": invoice["id"], "stripe_customer_id": invoice.get("customer"), "status": status,
              "amount_due": invoice.get("amount_due"), "currency": invoice.get("currency"),
              "last_event_id": event["id"], "updated_at": datetime.now(UTC).replace(tzinfo=None)}
    c = tb.billing_invoices.c
    with engine.begin() as conn:
        seen = conn.execute(select(c.last_event_id).where(c.invoice_id == invoice["id"])).scalar()
        if seen == event["id"]:
            return f"already recorded {event['id']}"
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(insert(tb.billing_invoices).values(**values).on_conflict_do_update(
            index_elements=["invoice_id"], set_={k: v for k, v in values.items() if k != "invoice_id"}))
    return f"invoice {invoice['id']} {status}"
