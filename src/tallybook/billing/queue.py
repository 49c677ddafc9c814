"""The durable queue of meter events: plan what Stripe should hold, then drain it.

`plan` recomputes each mapped customer's hourly values for every meter and compares them with the
latest version recorded for that (customer, meter, hour):
- nothing recorded and a value above zero: a new event, version 1, `pending`;
- the same value: nothing to do (a re-run is a no-op);
- a different value not yet sent: the pending event takes the new value (same identifier);
- a different value already sent: that event becomes `cancel_pending`, and version + 1 is queued
  with the new value under a new identifier (Stripe sums events, so a correction is a cancellation
  plus a replacement, never a re-send).
Identifiers are `tb1_` + SHA-256 of (org, customer, meter, hour, version): a retry of a send Stripe
already took is refused by Stripe as a duplicate, which the queue counts as sent.

`drain` sends cancellations first, then events, oldest hour first. While Stripe cannot be reached
(connection refused, 5xx, 429) it stops and leaves everything queued for the next run; an event
Stripe refuses (too old, unknown customer) is marked `failed` with Stripe's reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from sqlalchemy import Connection, Engine, Row, insert, select, update

from tallybook.billing import setup
from tallybook.billing.stripe_client import cancel_event, classify, describe, send_event
from tallybook.billing.usage import hourly_usage, hourly_values
from tallybook.ledger import schema_billing as tb
from tallybook.pricing.rules import load_rules

MAX_AGE = timedelta(days=35) - timedelta(hours=1)  # Stripe refuses timestamps older than 35 days


@dataclass
class PlanResult:
    new: int = 0
    corrected: int = 0
    unchanged: int = 0
    too_old: int = 0
    unmapped: set[str] = field(default_factory=set)


@dataclass
class DrainResult:
    sent: int = 0
    cancelled: int = 0
    failed: int = 0
    pending: int = 0  # still queued (Stripe unreachable)
    error: str | None = None


def identifier(org_id: int, customer: str, meter: str, hour: datetime, version: int) -> str:
    digest = hashlib.sha256(f"{org_id}|{customer}|{meter}|{hour:%Y-%m-%dT%H}|{version}".encode()).hexdigest()
    return f"tb1_{digest[:60]}"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def settled_end(end: datetime, now: datetime, settle_minutes: int) -> datetime:
    """The end of the last whole hour that settled (ended `settle_minutes` ago), at most `end`."""
    ready = (now - timedelta(minutes=settle_minutes)).replace(minute=0, second=0, microsecond=0)
    return min(end, ready)


def _latest(conn: Connection, org_id: int) -> dict[tuple[str, str, datetime], Row[Any]]:
    """The newest version recorded per (customer, meter, hour)."""
    e = tb.billing_events.c
    found: dict[tuple[str, str, datetime], Row[Any]] = {}
    for row in conn.execute(select(tb.billing_events).where(e.org_id == org_id).order_by(e.version)):
        found[(row.customer, row.meter, row.hour)] = row
    return found


def plan(engine: Engine, org_id: int, start: datetime, end: datetime, *, now: datetime, settle_minutes: int) -> PlanResult:
    result = PlanResult()
    end = settled_end(end, now, settle_minutes)
    if end <= start:
        return result
    with engine.begin() as conn:
        mapped = setup.customers(conn, org_id)
        meters = setup.meters(conn, org_id)
        usage = hourly_usage(conn, org_id, start, end, load_rules(conn, org_id))
        result.unmapped = {u.customer for u in usage if u.customer not in mapped}
        usage = [u for u in usage if u.customer in mapped]
        latest = _latest(conn, org_id)
        e = tb.billing_events.c
        for meter in meters.values():
            for (customer, hour), value in sorted(hourly_values(usage, meter).items()):
                before = latest.get((customer, meter.name, hour))
                if before is not None and before.value == value and before.status != "cancelled":
                    result.unchanged += 1
                    continue
                if before is None and value == 0:
                    continue
                if hour < now - MAX_AGE:
                    result.too_old += 1
                    continue
                if before is not None and before.status == "pending":
                    conn.execute(update(tb.billing_events).where(e.id == before.id).values(value=value))
                    result.corrected += 1
                    continue
                version = 1
                if before is not None:
                    version = before.version + 1
                    if before.status == "sent":
                        conn.execute(update(tb.billing_events).where(e.id == before.id)
                                     .values(status="cancel_pending"))
                    result.corrected += 1
                else:
                    result.new += 1
                if value == 0:
                    continue  # cancelling the old event is the whole correction
                conn.execute(insert(tb.billing_events).values(
                    org_id=org_id, customer=customer, meter=meter.name, hour=hour, version=version,
                    identifier=identifier(org_id, customer, meter.name, hour, version), value=value,
                    status="pending", attempts=0, created_at=now))
    return result


def drain(engine: Engine, client: stripe.StripeClient, org_id: int, *, now: datetime,
          on_progress: Callable[[int, int], None] | None = None) -> DrainResult:
    e = tb.billing_events.c
    result = DrainResult()
    with engine.connect() as conn:
        mapped = setup.customers(conn, org_id)
        meters = setup.meters(conn, org_id)
        queued = list(conn.execute(select(tb.billing_events).where(
            e.org_id == org_id, e.status.in_(("cancel_pending", "pending")))
            .order_by((e.status == "pending"), e.hour, e.id)))
    for done, row in enumerate(queued, 1):
        meter = meters.get(row.meter)
        values: dict[str, object]
        try:
            if meter is None or row.customer not in mapped:
                raise LookupError(f"meter {row.meter!r} or customer {row.customer!r} is no longer mapped")
            if row.status == "cancel_pending":
                cancel_event(client, event_name=meter.event_name, identifier=row.identifier)
                values = {"status": "cancelled"}
                result.cancelled += 1
            else:
                send_event(client, event_name=meter.event_name, identifier=row.identifier,
                           stripe_customer_id=mapped[row.customer], value=int(row.value),
                           timestamp=int(row.hour.replace(tzinfo=UTC).timestamp()) + 1800)
                values = {"status": "sent", "sent_at": now}
                result.sent += 1
        except stripe.StripeError as error:
            kind = classify(error)
            if kind == "duplicate" and row.status == "pending":
                values = {"status": "sent", "sent_at": now}
                result.sent += 1
            elif kind == "transient":
                with engine.begin() as conn:
                    conn.execute(update(tb.billing_events).where(e.id == row.id).values(
                        attempts=e.attempts + 1, last_error=describe(error)))
                result.error = describe(error)
                result.pending = len(queued) - done + 1
                return result
            else:
                values = {"status": "failed", "last_error": describe(error)}
                result.failed += 1
        except LookupError as error:
            values = {"status": "failed", "last_error": str(error)}
            result.failed += 1
        with engine.begin() as conn:
            conn.execute(update(tb.billing_events).where(e.id == row.id).values(attempts=e.attempts + 1, **values))
        if on_progress:
            on_progress(done, len(queued))
    return result
