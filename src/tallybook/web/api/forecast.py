"""`GET /api/v1/forecast`: month-end spend, reported to date plus a projection of the days left with a
prediction interval (`tallybook report forecast`; the method is in docs/analytics.md)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from tallybook.analytics.forecast import forecast
from tallybook.analytics.rollups import ReportQuery
from tallybook.analytics.trends import period_start
from tallybook.web.api.errors import ApiRoute
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, columns_of, csv_response, wants_csv
from tallybook.web.api.params import (
    MONTH_PATTERN,
    Days,
    Member,
    Reading,
    SeriesFilters,
    checked,
    days,
    first_of_month,
    groups,
    midnight,
    today,
)
from tallybook.web.api.schemas import Amount, Currency, Strict, plain
from tallybook.web.api.trend import GROUPS_HELP, SeriesGroup

router = APIRouter(route_class=ApiRoute, tags=["trends and forecasts"])


class ForecastRow(SeriesGroup):
    month: str
    spent_to_date: Amount
    forecast: Amount
    low: Amount | None = Field(description="None when there are too few days to estimate the noise.")
    high: Amount | None
    currency: Currency
    interval: float = Field(description="The prediction interval's level, e.g. 0.8.")
    spent_origin: Literal["reported"]
    origin: Literal["estimated"]
    method: str
    days_observed: int
    days_remaining: int
    history_days: int
    through: date = Field(description="The last observed day.")


class Forecasts(Strict):
    month: str
    history_from: date
    through: date
    group_by: list[str]
    rows: list[ForecastRow]


@router.get("/forecast", response_model=Forecasts, response_model_exclude_unset=True, responses=CSV_RESPONSE,
            summary="Month-end spend forecast")
def report_forecast(
    request: Request, principal: Member, conn: Reading, chosen: SeriesFilters,
    month: Annotated[str | None, Query(pattern=MONTH_PATTERN, description="The month to forecast, YYYY-MM "
                                       "(default: the month of the day after `to`).")] = None,
    date_from: Annotated[date | None, Query(alias="from", description="First UTC day of history "
                                            "(default: 56 days up to `to`).")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Last observed UTC day, inclusive "
                                          "(default: yesterday).")] = None,
    group_by: str = Query("", description=GROUPS_HELP),
    level: float = Query(0.8, ge=0.5, le=0.99, description="Prediction interval, e.g. 0.8 = 80 %."),
    fmt: FormatOption = None,
) -> object:
    """Same as `tallybook report forecast`."""
    given: Days = days(date_from, date_to, None)
    start, end = given.bounds()
    end = end or midnight(today())
    start = start or end - timedelta(days=56)
    start, end = checked(start, end)
    target = first_of_month(month)[0].date() if month else period_start(end.date(), "month")
    query = ReportQuery(org_id=principal.org_id, start=start, end=end, group_by=groups(group_by),
                        filters=chosen.as_dict("provider", "model", "project"))
    rows = [f.as_dict() for f in forecast(conn, query, target, level=level)]
    if wants_csv(request, fmt):
        return csv_response(principal, rows, columns_of(rows, ["month", *query.group_by]),
                            f"forecast-{target:%Y-%m}.csv")
    return Forecasts(month=f"{target:%Y-%m}", history_from=start.date(), through=(end - timedelta(days=1)).date(),
                     group_by=list(query.group_by), rows=[ForecastRow(**plain(r)) for r in rows])
