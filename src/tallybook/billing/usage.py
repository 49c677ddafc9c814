"""What each customer used per hour, priced for them: the gateway's metered events summed per
(customer, provider, model, hour), list cost marked up with the organisation's markup rules in force
at that hour (pricing.rules.customer_price), and each meter's value from that."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import Connection, case, func, select

from tallybook.billing.setup import Meter
from tallybook.ledger import schema as t
from tallybook.pricing.price import Price, PriceLine
from tallybook.pricing.rules import Rule, customer_price

NANOS = Decimal(1_000_000_000)
MICRO = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class HourUsage:
    """One customer's metered usage of one model in one hour, and its price for the customer."""

    customer: str
    provider: str
    model: str
    hour: datetime
    requests: int
    input_tokens: int  # uncached
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    list_cost: Decimal  # of the priced requests, in `currency`
    customer_cost: Decimal  # list_cost with the markups in force at `hour`
    currency: str
    unpriced_requests: int  # requests of a model with no list price: not billed, flagged

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.output_tokens


def _hour(conn: Connection, column: object) -> object:
    if conn.dialect.name == "postgresql":
        return func.date_trunc("hour", column)
    return func.strftime("%Y-%m-%d %H:00:00", column)


def hourly_usage(conn: Connection, org_id: int, start: datetime, end: datetime, rules: Iterable[Rule],
                 customers: Iterable[str] | None = None) -> list[HourUsage]:
    """Usage with a customer in [start, end), per customer, provider, model and hour, priced."""
    c = t.usage_events.c
    hour = _hour(conn, c.ts).label("hour")  # type: ignore[attr-defined]
    where = [c.org_id == org_id, c.ts >= start, c.ts < end, c.customer.is_not(None)]
    if customers is not None:
        where.append(c.customer.in_(list(customers)))
    query = (select(c.customer, c.provider, c.model, hour, c.currency, func.count().label("requests"),
                    func.sum(c.input_tokens).label("input_tokens"), func.sum(c.cache_read_tokens).label("cache_read"),
                    func.sum(c.cache_write_5m_tokens + c.cache_write_1h_tokens).label("cache_write"),
                    func.sum(c.output_tokens).label("output_tokens"),
                    func.sum(c.list_cost_nanos).label("nanos"),
                    func.sum(case((c.list_cost_nanos.is_(None), 1), else_=0)).label("unpriced"))
             .where(*where).group_by(c.customer, c.provider, c.model, hour, c.currency))
    rules = list(rules)
    found = []
    for r in conn.execute(query):
        at = r.hour if isinstance(r.hour, datetime) else datetime.fromisoformat(r.hour)
        list_cost = Decimal(int(r.nanos or 0)) / NANOS
        price = Price(r.provider, r.model or "", at, r.currency, lines=(
            PriceLine("list_cost", "list", 1, 1, list_cost, source="catalog"),))
        marked = customer_price(price, rules, at=at).total or Decimal(0)
        found.append(HourUsage(r.customer, r.provider, r.model or "", at, int(r.requests), int(r.input_tokens or 0),
                               int(r.cache_read or 0), int(r.cache_write or 0), int(r.output_tokens or 0),
                               list_cost, marked, r.currency, int(r.unpriced or 0)))
    found.sort(key=lambda u: (u.customer, u.hour, u.provider, u.model))
    return found


def meter_value(meter: Meter, rows: Iterable[HourUsage]) -> int:
    """The value one meter event carries for these rows (one customer, one hour)."""
    rows = list(rows)
    if meter.measure == "cost_micros":
        total = sum((r.customer_cost for r in rows if r.currency == meter.currency), Decimal(0))
        return int((total / MICRO).to_integral_value(rounding=ROUND_HALF_EVEN))
    if meter.measure == "total_tokens":
        return sum(r.total_tokens for r in rows)
    return sum(int(getattr(r, meter.measure)) for r in rows)


def hourly_values(usage: Iterable[HourUsage], meter: Meter) -> dict[tuple[str, datetime], int]:
    """{(customer, hour): value} for one meter."""
    groups: dict[tuple[str, datetime], list[HourUsage]] = {}
    for u in usage:
        groups.setdefault((u.customer, u.hour), []).append(u)
    return {key: meter_value(meter, rows) for key, rows in groups.items()}
