"""`GET /api/v1/costs` (`tallybook report costs`) and `GET /api/v1/costs/summary`: per-provider spend
of the current day, week, month, quarter or year with the time the ledger was last updated."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field
from sqlalchemy import Connection, func, select

from tallybook.analytics.currency import converted_cost_report
from tallybook.analytics.rollups import COST_GROUPS, ReportQuery, cost_report
from tallybook.analytics.trends import next_period, period_start
from tallybook.ledger import schema as t
from tallybook.pricing.fx import org_currency
from tallybook.web.api.errors import ApiRoute, invalid
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, csv_response, wants_csv
from tallybook.web.api.params import (
    EARLIEST,
    LATEST,
    DaysOption,
    FilterOptions,
    Member,
    Reading,
    report_query,
    today,
)
from tallybook.web.api.schemas import Amount, CostGroup, Currency, Moment, Number, Strict, number, plain

router = APIRouter(route_class=ApiRoute, tags=["usage and costs"])
PERIODS = {"daily": "day", "weekly": "week", "monthly": "month", "quarterly": "quarter", "yearly": "year"}


class CostRow(CostGroup):
    amount: Amount
    currency: Currency
    origin: Literal["reported"] = Field(description="Vendor-reported cost.")
    original_amount: Amount | None = Field(None, description="Before conversion (converted rows only).")
    original_currency: str | None = None
    fx_rate: Number | None = Field(None, description="converted / original amount.")
    fx_rate_date: str | None = Field(None, description="The ECB day(s) the rates came from.")
    fx_source: str | None = None


class CostReport(Strict):
    first_day: date
    last_day: date
    group_by: list[str]
    currency: Currency = Field(description="The currency every row is in (after conversion, if any was needed).")
    rows: list[CostRow]


def costs_in(conn: Connection, query: ReportQuery, currency: str | None) -> list[dict[str, Any]]:
    """What `tallybook report costs` prints: each group in the organisation's currency (or `currency`),
    converted day by day at the ECB rate when a vendor billed in another."""
    rows = cost_report(conn, query)
    target = (currency or org_currency(conn, query.org_id)).upper()
    if any(r["currency"] != target for r in rows):
        rows = converted_cost_report(conn, query, target)
    return rows


CurrencyOption = Query(None, pattern=r"^[A-Za-z]{3}$",
                       description="Report in this currency (default: the organisation's), converting each day at "
                                   "the ECB rate.")


@router.get("/costs", response_model=CostReport, response_model_exclude_unset=True, responses=CSV_RESPONSE,
            summary="Vendor-reported costs for a window, grouped")
def costs(
    request: Request, principal: Member, conn: Reading, window: DaysOption, chosen: FilterOptions,
    group_by: str = Query("provider,model", description=f"Comma-separated, from: {', '.join(COST_GROUPS)}."),
    currency: str | None = CurrencyOption, fmt: FormatOption = None,
) -> object:
    """`amount` is in the currency's main unit. Same as `tallybook report costs`."""
    start, end = window.window()
    query = report_query(principal, start, end, group_by, chosen.as_dict("provider", "model", "project", "source"))
    rows = costs_in(conn, query, currency)
    target = (currency or org_currency(conn, principal.org_id)).upper()
    first, last = start.date(), (end - timedelta(days=1)).date()
    if wants_csv(request, fmt):
        names = [f"{g}_name" for g in query.group_by if rows and f"{g}_name" in rows[0]]
        fx = ["original_amount", "original_currency", "fx_rate", "fx_rate_date"] if rows and "fx_rate" in rows[0] else []
        return csv_response(principal, rows, [*query.group_by, *names, "amount", "currency", *fx, "origin"],
                            f"costs-{first}-{last}.csv")
    return CostReport(first_day=first, last_day=last, group_by=list(query.group_by), currency=target,
                      rows=[CostRow(**plain(r)) for r in rows])


class ProviderSpend(Strict):
    provider: str
    amount: Amount
    currency: Currency
    origin: Literal["reported"]
    last_sync_at: Moment | None = Field(description="When a connection of this provider last synced.")


class CostSummary(Strict):
    period: str
    first_day: date
    last_day: date = Field(description="The period's last day (it may still be running).")
    complete: bool = Field(description="False while the period is still running.")
    currency: Currency
    total: Amount
    origin: Literal["reported"]
    last_updated: Moment | None = Field(description="The last time any connection of the organisation synced.")
    providers: list[ProviderSpend]


@router.get("/costs/summary", response_model=CostSummary, summary="Spend per provider in the current period")
def summary(
    principal: Member, conn: Reading,
    period: Annotated[Literal["daily", "weekly", "monthly", "quarterly", "yearly"], Query(
        description="The period holding `at`: its spend so far.")] = "monthly",
    at: Annotated[date | None, Query(description="A day inside the period, YYYY-MM-DD (default: today).")] = None,
    currency: str | None = CurrencyOption,
) -> CostSummary:
    """Reported spend per provider in the day/week/month/quarter/year holding `at`, in the organisation's
    currency, with each provider's and the organisation's last sync time. The figures equal
    `tallybook report costs --group-by provider` over the same days."""
    day = at or today()
    if not EARLIEST <= day <= LATEST:
        raise invalid(f"`at` must be a day between {EARLIEST} and {LATEST}, not {day}.")
    name = PERIODS[period]
    first = period_start(day, name)
    end = next_period(first, name)
    query = ReportQuery(org_id=principal.org_id, start=datetime.combine(first, datetime.min.time()),
                        end=datetime.combine(end, datetime.min.time()), group_by=["provider"])
    rows = costs_in(conn, query, currency)
    target = (currency or org_currency(conn, principal.org_id)).upper()
    c = t.connections.c
    synced = dict(conn.execute(select(c.provider, func.max(c.last_sync_at))
                               .where(c.org_id == principal.org_id).group_by(c.provider)).all())
    total = sum((r["amount"] for r in rows), Decimal(0))
    return CostSummary(
        period=period, first_day=first, last_day=end - timedelta(days=1), complete=end <= today(),
        currency=target, total=number(total), origin="reported",
        last_updated=max((v for v in synced.values() if v is not None), default=None),
        providers=[ProviderSpend(provider=r["provider"], amount=plain(r)["amount"], currency=r["currency"],
                                 origin="reported", last_sync_at=synced.get(r["provider"])) for r in rows])
