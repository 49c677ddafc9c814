"""Which Stripe customer each tallybook customer is, and which Stripe meter each measure goes to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tallybook.errors import BillingError
from tallybook.ledger import schema_billing as tb

# What a meter counts, per customer and hour. Token counts are the gateway's metered fields;
# `cost_micros` is the customer price (list price with the markup rules) in millionths of the currency,
# so a Stripe price of 0.0001 cents per unit bills it at cost.
MEASURES = ("cost_micros", "input_tokens", "cache_read_tokens", "output_tokens", "total_tokens", "requests")


@dataclass(frozen=True, slots=True)
class Meter:
    name: str
    event_name: str
    measure: str
    currency: str
    unit_price: Decimal | None  # what Stripe charges per unit, for previews
    stripe_meter_id: str | None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _upsert(conn: Connection, table: object, values: dict[str, object], keys: list[str]) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table).values(**values)  # type: ignore[arg-type]
    conn.execute(stmt.on_conflict_do_update(index_elements=keys,
                                            set_={k: v for k, v in values.items() if k not in keys}))


def map_customer(conn: Connection, org_id: int, customer: str, stripe_customer_id: str) -> None:
    if not stripe_customer_id.startswith("cus_"):
        raise BillingError(f"{stripe_customer_id!r} is not a Stripe customer id (cus_...).")
    _upsert(conn, tb.billing_customers, {"org_id": org_id, "customer": customer,
                                         "stripe_customer_id": stripe_customer_id, "created_at": _now()},
            ["org_id", "customer"])


def unmap_customer(conn: Connection, org_id: int, customer: str) -> None:
    c = tb.billing_customers.c
    if not conn.execute(delete(tb.billing_customers).where(c.org_id == org_id, c.customer == customer)).rowcount:
        raise BillingError(f"Customer {customer!r} is not mapped; `tallybook billing customers list` shows the map.")


def customers(conn: Connection, org_id: int) -> dict[str, str]:
    c = tb.billing_customers.c
    return {r.customer: r.stripe_customer_id for r in conn.execute(
        select(c.customer, c.stripe_customer_id).where(c.org_id == org_id).order_by(c.customer))}


def add_meter(conn: Connection, org_id: int, name: str, event_name: str, measure: str, *, currency: str = "USD",
              unit_price: str | None = None, stripe_meter_id: str | None = None) -> Meter:
    if measure not in MEASURES:
        raise BillingError(f"--measure is one of {', '.join(MEASURES)}, not {measure!r}.")
    if not event_name or len(event_name) > 100:
        raise BillingError("A Stripe meter's event_name is 1 to 100 characters.")
    price: Decimal | None = None
    if unit_price is not None:
        try:
            price = Decimal(unit_price)
        except InvalidOperation:
            price = None
        if price is None or not price.is_finite() or price < 0:
            raise BillingError(f"--unit-price is a number such as 0.000001, not {unit_price!r}.")
    elif measure == "cost_micros":
        price = Decimal("0.000001")  # billed at cost: one unit is a millionth of the currency
    _upsert(conn, tb.billing_meters, {
        "org_id": org_id, "name": name, "event_name": event_name, "measure": measure, "currency": currency.upper(),
        "unit_price": str(price) if price is not None else None, "stripe_meter_id": stripe_meter_id,
        "created_at": _now()}, ["org_id", "name"])
    return meters(conn, org_id)[name]


def meters(conn: Connection, org_id: int) -> dict[str, Meter]:
    c = tb.billing_meters.c
    return {r.name: Meter(r.name, r.event_name, r.measure, r.currency,
                          Decimal(r.unit_price) if r.unit_price is not None else None, r.stripe_meter_id)
            for r in conn.execute(select(tb.billing_meters).where(c.org_id == org_id).order_by(c.name))}
