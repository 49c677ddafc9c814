"""`GET /api/v1/anomalies`: days whose reported spend is far from what the same weekday in recent weeks
predicts (`tallybook report anomalies`; the method is in docs/analytics.md)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from tallybook.analytics.anomalies import AnomalyRule, find_anomalies
from tallybook.analytics.rollups import ReportQuery
from tallybook.web.api.errors import ApiRoute, invalid
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, columns_of, csv_response, wants_csv
from tallybook.web.api.params import (
    DaysOption,
    Member,
    Reading,
    SeriesFilters,
    checked,
    decimal_option,
    groups,
    midnight,
    today,
)
from tallybook.web.api.schemas import Amount, Currency, Number, Strict, plain
from tallybook.web.api.trend import GROUPS_HELP, SeriesGroup

router = APIRouter(route_class=ApiRoute, tags=["trends and forecasts"])


class AnomalyRow(SeriesGroup):
    day: date
    actual: Amount = Field(description="Reported spend of the day.")
    expected: Amount
    low: Amount
    high: Amount
    currency: Currency
    score: Number = Field(description="A robust z-score: beyond ±k the day is flagged.")
    direction: Literal["spike", "drop"]
    origin: Literal["reported"]
    expected_origin: Literal["estimated"]


class Anomalies(Strict):
    first_day: date
    last_day: date
    group_by: list[str]
    rows: list[AnomalyRow]


@router.get("/anomalies", response_model=Anomalies, response_model_exclude_unset=True, responses=CSV_RESPONSE,
            summary="Spend anomalies")
def report_anomalies(
    request: Request, principal: Member, conn: Reading, window: DaysOption, chosen: SeriesFilters,
    group_by: str = Query("provider,model", description=GROUPS_HELP.replace(" Default: totals only.", "")),
    weeks: int = Query(8, ge=3, le=52, description="Weeks of same-weekday history to compare with."),
    k: float = Query(3.5, ge=1.0, le=100.0, description="Robust standard deviations a day must be off."),
    min_abs: str = Query("1.00", pattern=r"^\d{1,12}(\.\d{1,9})?$", description="Smallest flagged difference."),
    min_rel: str = Query("0.25", pattern=r"^\d{1,6}(\.\d{1,9})?$",
                         description="Smallest flagged difference, as a share of the expected spend."),
    fmt: FormatOption = None,
) -> object:
    """Default window: the 30 days up to yesterday (the last complete day). Same as
    `tallybook report anomalies`."""
    start, end = window.bounds()
    midnight_today = midnight(today())
    end = min(end, midnight_today) if window.month and end else end or midnight_today
    start = start or end - timedelta(days=30)
    if end <= start:
        raise invalid("Nothing to check: the window ends before it starts (or is today).")
    start, end = checked(start, end)
    rule = AnomalyRule(weeks=weeks, k=k, min_abs=decimal_option(min_abs, "min_abs"),
                       min_rel=decimal_option(min_rel, "min_rel"))
    query = ReportQuery(org_id=principal.org_id, start=start, end=end, group_by=groups(group_by),
                        filters=chosen.as_dict("provider", "model", "project"))
    rows = [a.as_dict() for a in find_anomalies(conn, query, rule)]
    first, last = start.date(), (end - timedelta(days=1)).date()
    if wants_csv(request, fmt):
        return csv_response(principal, rows, columns_of(rows, ["day", *query.group_by]),
                            f"anomalies-{first}-{last}.csv")
    return Anomalies(first_day=first, last_day=last, group_by=list(query.group_by),
                     rows=[AnomalyRow(**plain(r)) for r in rows])
