"""The official `stripe` SDK, configured from settings, and what its errors mean for the queue.

`transient` errors (Stripe unreachable, 5xx, 429) leave events queued for the next sync; a
`duplicate` means Stripe already has the identifier (an earlier try got through before we could
record it), which is success; anything else is Stripe refusing the event for good."""

from __future__ import annotations

from typing import Any

import stripe

from tallybook.config import Settings
from tallybook.errors import BillingError


def make_client(settings: Settings) -> stripe.StripeClient:
    if not settings.stripe_api_key:
        raise BillingError("No Stripe key: set TALLYBOOK_STRIPE_API_KEY to a secret or restricted key "
                           "with billing meters, meter events and customers.")
    return stripe.StripeClient(settings.stripe_api_key, base_addresses={"api": settings.stripe_api_base},
                               max_network_retries=2)


def classify(error: stripe.StripeError) -> str:
    """transient | duplicate | refused"""
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return "transient"
    if (error.http_status or 0) >= 500:
        return "transient"
    if getattr(error, "code", None) == "resource_already_exists" and "identifier" in str(getattr(error, "param", None) or ""):
        return "duplicate"
    return "refused"


def describe(error: stripe.StripeError) -> str:
    """One line, without the key: Stripe's own message, status and code."""
    status = f"{error.http_status} " if error.http_status else ""
    code = f" ({error.code})" if getattr(error, "code", None) else ""
    message = error.user_message or str(error._message or type(error).__name__)
    return f"Stripe {status}{type(error).__name__}{code}: {message}"[:500]


def send_event(client: stripe.StripeClient, *, event_name: str, identifier: str, stripe_customer_id: str,
               value: int, timestamp: int) -> Any:
    return client.v1.billing.meter_events.create(params={
        "event_name": event_name, "identifier": identifier, "timestamp": timestamp,
        "payload": {"stripe_customer_id": stripe_customer_id, "value": str(value)}})


def cancel_event(client: stripe.StripeClient, *, event_name: str, identifier: str) -> Any:
    return client.v1.billing.meter_event_adjustments.create(params={
        "event_name": event_name, "type": "cancel", "cancel": {"identifier": identifier}})
