"""Costs reported in the organisation's currency: each day converted at that day's ECB rate.

Amounts stay in the vendor's currency in the ledger. A converted report groups by day underneath,
converts each day's amount at the reference rate of that day (or the latest before it, see
`pricing.fx.convert`), then sums. Each row keeps the original amount and currency beside the
converted one, the effective rate (converted / original) and the ECB day(s) the rates came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from tallybook.analytics.rollups import PERIODS, ReportQuery, cost_report
from tallybook.analytics.trends import period_label, period_start
from tallybook.pricing.fx import convert, load_rates

RATE_PLACES = Decimal("0.000001")


def converted_cost_report(conn: Connection, query: ReportQuery, to_ccy: str) -> list[dict[str, Any]]:
    """`cost_report` with every amount in `to_ccy`; raises FxError when a needed rate is missing."""
    to_ccy = to_ccy.upper()
    periods = [g for g in query.group_by if g in PERIODS]
    period = periods[0] if periods else None
    plain = [g for g in query.group_by if g not in PERIODS]
    daily = cost_report(conn, dataclasses.replace(query, group_by=[*plain, "day"]))
    currencies = {r["currency"] for r in daily} | {to_ccy}
    rates = load_rates(conn, currencies, since=query.start.date() - timedelta(days=14), until=query.end.date()) \
        if currencies != {to_ccy} else None
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in daily:
        day = date.fromisoformat(row["day"])
        label = period_label(period_start(day, period), period) if period else None
        ident = tuple(label if g == period else row[g] for g in query.group_by)
        target = out.setdefault(ident, {
            **dict(zip(query.group_by, ident)), "amount": Decimal(0), "currency": to_ccy, "origin": "reported",
            "original_amount": Decimal(0), "original_currency": set(), "fx_dates": set(), "fx_source": None})
        if row["currency"] == to_ccy:
            target["amount"] += row["amount"]
            target["original_amount"] += row["amount"]
        else:
            assert rates is not None
            done = convert(row["amount"], row["currency"], to_ccy, on=day, rates=rates)
            target["amount"] += done.amount
            target["original_amount"] += row["amount"]
            target["fx_dates"].add(done.rate_date)
            target["fx_source"] = done.source
        target["original_currency"].add(row["currency"])
    return [_finish(r) for r in out.values()]


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    currencies: Sequence[str] = sorted(row.pop("original_currency"))
    dates = sorted(row.pop("fx_dates"))
    row["original_currency"] = currencies[0] if len(currencies) == 1 else "+".join(currencies)
    if len(currencies) > 1:
        row["original_amount"] = None  # a sum of different currencies means nothing
    single = len(currencies) == 1 and row["original_amount"]
    row["fx_rate"] = (row["amount"] / row["original_amount"]).quantize(RATE_PLACES) if single else None
    row["fx_rate_date"] = (None if not dates else str(dates[0]) if len(dates) == 1
                           else f"{dates[0]}..{dates[-1]}")
    if not dates:
        row["fx_source"] = None
        if single and row["original_currency"] == row["currency"]:
            row["fx_rate"] = Decimal(1)
    return row
