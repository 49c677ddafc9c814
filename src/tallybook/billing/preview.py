"""The invoice preview: for one customer and month, the line items Stripe will bill from the meter
events tallybook sends (quantity per meter x the meter's unit price), beside the priced usage they
come from (per provider and model: requests, tokens, list cost, the customer's price)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from tallybook.billing import setup
from tallybook.billing.usage import HourUsage, hourly_usage, hourly_values
from tallybook.errors import BillingError
from tallybook.pricing.rules import load_rules


@dataclass(frozen=True, slots=True)
class LineItem:
    meter: str
    event_name: str
    measure: str
    quantity: int
    unit_price: Decimal | None  # None: the meter has no --unit-price, so no amount
    amount: Decimal | None
    currency: str

    def as_dict(self) -> dict[str, object]:
        return {"meter": self.meter, "event_name": self.event_name, "measure": self.measure,
                "quantity": self.quantity, "unit_price": self.unit_price, "amount": self.amount,
                "currency": self.currency, "origin": "estimated"}


@dataclass(frozen=True, slots=True)
class Preview:
    customer: str
    stripe_customer_id: str | None
    start: datetime
    end: datetime
    lines: list[LineItem]
    usage: list[dict[str, Any]]  # per provider and model
    unpriced_requests: int

    def totals(self) -> dict[str, Decimal]:
        found: dict[str, Decimal] = {}
        for line in self.lines:
            if line.amount is not None:
                found[line.currency] = found.get(line.currency, Decimal(0)) + line.amount
        return found


def _by_model(rows: list[HourUsage]) -> list[dict[str, object]]:
    groups: dict[tuple[str, str, str], dict[str, object]] = {}
    for r in rows:
        g = groups.setdefault((r.provider, r.model, r.currency), {
            "provider": r.provider, "model": r.model, "requests": 0, "input_tokens": 0, "cache_read_tokens": 0,
            "output_tokens": 0, "list_cost": Decimal(0), "customer_cost": Decimal(0), "currency": r.currency})
        for k in ("requests", "input_tokens", "cache_read_tokens", "output_tokens"):
            g[k] = int(g[k]) + int(getattr(r, k))  # type: ignore[call-overload]
        g["list_cost"] = g["list_cost"] + r.list_cost  # type: ignore[operator]
        g["customer_cost"] = g["customer_cost"] + r.customer_cost  # type: ignore[operator]
    return [groups[k] for k in sorted(groups)]


def preview(conn: Connection, org_id: int, customer: str, start: datetime, end: datetime) -> Preview:
    meters = setup.meters(conn, org_id)
    if not meters:
        raise BillingError("No billing meters: add one with `tallybook billing meters add`.")
    rows = hourly_usage(conn, org_id, start, end, load_rules(conn, org_id), customers=[customer])
    lines = []
    for meter in meters.values():
        quantity = sum(hourly_values(rows, meter).values())
        amount = None if meter.unit_price is None else quantity * meter.unit_price
        lines.append(LineItem(meter.name, meter.event_name, meter.measure, quantity, meter.unit_price, amount,
                              meter.currency))
    return Preview(customer, setup.customers(conn, org_id).get(customer), start, end, lines, _by_model(rows),
                   sum(r.unpriced_requests for r in rows))
