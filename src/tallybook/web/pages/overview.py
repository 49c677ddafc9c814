"""Overview: this month's effective rate against list and the market index, spend, tokens, the monthly
trend, the month-end forecast, and the connected providers with their last sync."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cache
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine

from tallybook.analytics.benchmark import Tiers, benchmark_report, load_tiers
from tallybook.analytics.forecast import forecast
from tallybook.analytics.pricers import blended_list_price, list_pricer
from tallybook.analytics.rates import rates
from tallybook.analytics.rollups import ReportQuery, cost_report
from tallybook.analytics.trends import trend
from tallybook.ledger import store
from tallybook.security.redaction import redact
from tallybook.web.auth import Principal, page_principal
from tallybook.web.pages.base import (
    Column,
    Table,
    Window,
    answers,
    chart_series,
    month_window,
    respond,
    this_month,
    today,
)

router = APIRouter()

RATE_COLUMNS = (
    Column("provider"), Column("input_tokens", "int"), Column("output_tokens", "int"),
    Column("input_rate_mtok", "rate"), Column("output_rate_mtok", "rate"), Column("blended_rate_mtok", "rate"),
    Column("token_cost", "money"), Column("list_cost", "money"), Column("discount", "share"), Column("currency"),
)
MARKET_COLUMNS = (
    Column("tier"), Column("org_blended_rate_mtok", "rate"), Column("index_blended_mtok", "rate"),
    Column("vs_index_pct", "pct"), Column("org_models"), Column("index_as_of"),
)
SPEND_COLUMNS = (Column("provider"), Column("amount", "money"), Column("currency"), Column("origin"))
TREND_COLUMNS = (Column("period"), Column("amount", "money"), Column("change", "money"),
                 Column("change_pct", "pct"), Column("tokens", "int"), Column("complete", "bool"),
                 Column("currency"))
FORECAST_COLUMNS = (Column("month"), Column("spent_to_date", "money"), Column("forecast", "money"),
                    Column("low", "money"), Column("high", "money"), Column("days_observed", "int"),
                    Column("days_remaining", "int"), Column("method"), Column("currency"))
PROVIDER_COLUMNS = (Column("name"), Column("provider"), Column("status"), Column("last_sync_at", "when"),
                    Column("last_error"))
TREND_MONTHS = 6


@cache
def tiers() -> Tiers:
    """The market tiers file, read once per process (it changes with a release, not at run time)."""
    return load_tiers()


def _rate_row(row: Any) -> dict[str, Any]:
    return {**row.as_dict(), "token_cost": row.token_cost}


def overview_data(engine: Engine, org_id: int, month: Window) -> tuple[list[Table], dict[str, Any]]:
    """The overview's figures: independent reads, answered side by side (`answers`)."""
    def query(group_by: list[str], start: Any = month.start, end: Any = month.end) -> ReportQuery:
        return ReportQuery(org_id=org_id, start=start, end=end, group_by=group_by)

    first = month_window(f"{month.start:%Y-%m}").start
    for _ in range(TREND_MONTHS - 1):
        first = month_window(f"{first - timedelta(days=1):%Y-%m}").start
    history_end = min(today(), month.end)
    label = month.month or f"{month.start:%Y-%m}"
    asks: dict[str, Callable[[Connection], Any]] = {
        "total_rate": lambda c: [_rate_row(r) for r in rates(c, query([]), list_pricer=list_pricer)],
        "by_provider": lambda c: [_rate_row(r) for r in rates(c, query(["provider"]), list_pricer=list_pricer)],
        "spend": lambda c: (cost_report(c, query([])), cost_report(c, query(["provider"]))),
        # through today, so the month under way shows as incomplete
        "monthly": lambda c: [r.as_dict() for r in trend(c, query([], first, min(history_end + timedelta(days=1),
                                                                                  month.end)), "month")],
        "ahead": lambda c: [f.as_dict() for f in forecast(c, query([], history_end - timedelta(days=56),
                                                                   history_end), month.start.date())],
        "market": lambda c: benchmark_report(c, org_id, label, blended_list_price, tiers=tiers()),
        "providers": lambda c: [
            {"name": x.name, "provider": x.provider, "status": x.status, "last_sync_at": x.last_sync_at,
             "last_error": redact(x.last_error) if x.last_error else None}
            for x in store.list_connections(c, org_id)],
    }

    got = answers(engine, asks)
    spend_total, spend = got["spend"]
    monthly = got["monthly"]
    previous = [r for r in monthly if r["complete"]][-1:]  # the last complete month, with its change
    tables = [
        Table("rates", "overview.rates", RATE_COLUMNS, got["by_provider"], note="overview.rates_note"),
        Table("market", "overview.market", MARKET_COLUMNS, got["market"], note="overview.market_note"),
        Table("spend", "overview.spend", SPEND_COLUMNS, spend, note="note.reported"),
        Table("trend", "overview.trend", TREND_COLUMNS, monthly, note="overview.trend_note",
              chart=chart_series(monthly, x="period", y="amount", series=lambda r: r["currency"], kind="bar")),
        Table("forecast", "overview.forecast", FORECAST_COLUMNS, got["ahead"], note="overview.forecast_note"),
        Table("providers", "overview.providers", PROVIDER_COLUMNS, got["providers"], empty="overview.no_providers"),
    ]
    cards = {"rate": got["total_rate"], "spend": spend_total, "forecast": got["ahead"], "previous": previous}
    return tables, cards


@router.get("/")
def overview(request: Request, principal: Principal = Depends(page_principal)) -> Response:
    month = this_month()
    tables, cards = overview_data(request.app.state.engine, principal.org_id, month)
    return respond(request, principal, "overview.html", tables, title="overview.title", month=month, cards=cards)
