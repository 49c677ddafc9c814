"""`GET /api/v1/trend`: reported spend per day, week, month, quarter or year with the change on the period
before (`tallybook report trend`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field, create_model

from tallybook.analytics.rollups import COST_GROUPS, PERIODS, ReportQuery
from tallybook.analytics.trends import TREND_PERIODS, period_start, trend
from tallybook.web.api.errors import ApiRoute
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, columns_of, csv_response, wants_csv
from tallybook.web.api.params import (
    DaysOption,
    Member,
    Reading,
    SeriesFilters,
    checked,
    groups,
    midnight,
    today,
)
from tallybook.web.api.schemas import Amount, Currency, Number, Strict, group_fields, plain

router = APIRouter(route_class=ApiRoute, tags=["trends and forecasts"])
# How far back each period's trend reaches by default, in periods (the current one included), as the CLI.
DEFAULT_PERIODS = {"day": 30, "week": 12, "month": 12, "quarter": 8, "year": 3}
DIMENSIONS = tuple(g for g in COST_GROUPS if g not in PERIODS)
GROUPS_HELP = f"Comma-separated dimensions, from: {', '.join(DIMENSIONS)}. Default: totals only."
SeriesGroup: type[Strict] = create_model("SeriesGroup", __base__=Strict, **group_fields(DIMENSIONS))


class TrendRow(SeriesGroup):
    period: str = Field(description="2026-10-05, 2026-10, 2026-Q4, 2026 (a week is its Monday).")
    start: date
    end: date = Field(description="Exclusive.")
    amount: Amount
    currency: Currency
    origin: Literal["reported"]
    change: Amount | None = Field(description="On the period before; none for the window's first.")
    change_pct: Number | None
    tokens: int | None = Field(description="The group's reported usage in the period, when it has a meaning.")
    complete: bool = Field(description="False when the window cuts the period short.")


class Trend(Strict):
    period: str
    first_day: date
    last_day: date
    group_by: list[str]
    rows: list[TrendRow]


@router.get("/trend", response_model=Trend, response_model_exclude_unset=True, responses=CSV_RESPONSE,
            summary="Spend per period with the change")
def report_trend(
    request: Request, principal: Member, conn: Reading, window: DaysOption, chosen: SeriesFilters,
    period: Literal["day", "week", "month", "quarter", "year"] = Query("month"),
    group_by: str = Query("", description=GROUPS_HELP), fmt: FormatOption = None,
) -> object:
    """Each currency is its own series. Default window: the last 30 days / 12 weeks / 12 months /
    8 quarters / 3 years up to today. Same as `tallybook report trend`."""
    assert period in TREND_PERIODS
    start, end = window.bounds()
    end = end or midnight(today() + timedelta(days=1))
    if start is None:
        first = period_start(end.date() - timedelta(days=1), period)
        for _ in range(DEFAULT_PERIODS[period] - 1):
            first = period_start(first - timedelta(days=1), period)
        start = midnight(first)
    start, end = checked(start, end)
    query = ReportQuery(org_id=principal.org_id, start=start, end=end, group_by=groups(group_by),
                        filters=chosen.as_dict("provider", "model", "project"))
    rows = [r.as_dict() for r in trend(conn, query, period)]
    first_day, last_day = start.date(), (end - timedelta(days=1)).date()
    if wants_csv(request, fmt):
        return csv_response(principal, rows, columns_of(rows, ["period", *query.group_by]),
                            f"trend-{period}-{first_day}-{last_day}.csv")
    return Trend(period=period, first_day=first_day, last_day=last_day, group_by=list(query.group_by),
                 rows=[TrendRow(**plain(r)) for r in rows])
