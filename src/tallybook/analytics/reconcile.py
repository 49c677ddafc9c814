"""Reconciliation per day and model: do our figures match the vendor's bill?

    cost    estimated (usage x list or negotiated price, by `tallybook.pricing`) vs vendor-reported
            token cost (input- and output-side line items; images, searches and other units are
            outside the comparison)
    tokens  metered by the gateway (source "gateway") vs vendor-reported usage (admin APIs)

A row is flagged when |delta| / reported exceeds the threshold (default 1 %), or when one side
is missing entirely. Unknown models are reported as unpriced, never as a zero estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select

from tallybook.analytics.rates import FINE, INPUT_TYPES, OUTPUT_TYPES, ListPricer, _where
from tallybook.analytics.rollups import CODING_SOURCES, ReportQuery, _period, reading_table
from tallybook.ledger import schema as t

CENT = Decimal("0.01")
DEFAULT_THRESHOLD = Decimal("0.01")
MEASURES = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
            "output_tokens", "audio_input_tokens", "audio_output_tokens")


@dataclass
class ReconcileRow:
    day: str
    provider: str
    model: str | None
    reported_cost: Decimal = Decimal(0)
    estimated_cost: Decimal | None = Decimal(0)  # None: the model has no price
    reported_tokens: int = 0
    metered_tokens: int = 0
    currency: str = "USD"

    def cost_delta(self) -> Decimal | None:
        return None if self.estimated_cost is None else self.estimated_cost - self.reported_cost

    def as_dict(self, threshold: Decimal) -> dict[str, Any]:
        delta = self.cost_delta()
        pct = None if delta is None or not self.reported_cost else delta / self.reported_cost
        cost_flag = self.estimated_cost is None or (pct is not None and abs(pct) > threshold) or (
            delta is not None and not self.reported_cost and self.estimated_cost)
        token_delta = self.metered_tokens - self.reported_tokens if self.metered_tokens else None
        token_pct = (Decimal(token_delta) / self.reported_tokens
                     if token_delta is not None and self.reported_tokens else None)
        token_flag = token_delta is not None and (token_pct is None or abs(token_pct) > threshold)
        return {
            "day": self.day, "provider": self.provider, "model": self.model, "currency": self.currency,
            "reported_cost": self.reported_cost.quantize(Decimal("0.000001")), "reported_origin": "reported",
            "estimated_cost": None if self.estimated_cost is None else self.estimated_cost.quantize(Decimal("0.000001")),
            "estimated_origin": "estimated",
            "cost_delta": None if delta is None else delta.quantize(Decimal("0.000001")),
            "cost_delta_pct": None if pct is None else (pct * 100).quantize(CENT),
            "reported_tokens": self.reported_tokens, "metered_tokens": self.metered_tokens,
            "token_delta_pct": None if token_pct is None else (token_pct * 100).quantize(CENT),
            "flagged": bool(cost_flag or token_flag),
            "reason": "; ".join(r for r, on in (("no list price for the model", self.estimated_cost is None),
                                                ("cost delta over threshold", bool(cost_flag) and self.estimated_cost is not None),
                                                ("metered tokens differ", bool(token_flag))) if on),
        }


def reconcile(conn: Connection, query: ReportQuery, pricer: ListPricer) -> list[ReconcileRow]:
    rows: dict[tuple[str, str, str | None], ReconcileRow] = {}

    def row(day: str, provider: str, model: str | None) -> ReconcileRow:
        return rows.setdefault((day, provider, model), ReconcileRow(day, provider, model))

    # Both sides from the daily rollups when the organisation has them (the same sums as the records).
    cr, cday = reading_table(conn, t.cost_records, query, ("provider", "model", "token_type", "currency", "source"))
    c = cr.c
    day = _period(conn, "day", cday).label("day")
    stmt = (select(day, c.provider, c.model, c.currency, func.sum(c.amount_nanos).label("nanos"))
            .where(*_where(cr, cday, query), c.token_type.in_(INPUT_TYPES + OUTPUT_TYPES),
                   c.source.not_in(CODING_SOURCES))
            .group_by(day, c.provider, c.model, c.currency))
    for r in conn.execute(stmt).mappings():
        target = row(r["day"], r["provider"], r["model"])
        target.reported_cost += Decimal(int(r["nanos"])) / Decimal(1_000_000_000)
        target.currency = r["currency"]

    ur, uday_column = reading_table(conn, t.usage_records, query, ("unit", "source", *FINE))
    u = ur.c
    uday = _period(conn, "day", uday_column).label("day")
    gateway = (u.source == "gateway").label("metered")
    stmt = (select(uday, u.provider, u.model, u.service_tier, u.batch, u.context_window, gateway,
                   *[func.sum(u[m]).label(m) for m in MEASURES])
            .where(*_where(ur, uday_column, query), u.unit.is_(None), u.source.not_in(CODING_SOURCES))
            .group_by(uday, u.provider, u.model, u.service_tier, u.batch, u.context_window, gateway))
    for r in conn.execute(stmt).mappings():
        target = row(r["day"], r["provider"], r["model"])
        tokens = sum(int(r[m] or 0) for m in MEASURES[:5])
        if r["metered"]:
            target.metered_tokens += tokens
            continue
        target.reported_tokens += tokens
        measures = {m: int(r[m] or 0) for m in MEASURES}
        measures.update(service_tier=r["service_tier"], batch=r["batch"], context_window=r["context_window"])
        price = pricer(r["provider"], r["model"], datetime.fromisoformat(r["day"]), measures)
        if price is None or target.estimated_cost is None:
            if tokens:
                target.estimated_cost = None
        else:
            target.estimated_cost += price
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1], k[2] or ""))]
