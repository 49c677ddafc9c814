"""`GET /api/v1/rates`: effective input, output and blended $ per 1M tokens from reported cost, and the
discount against list price (`tallybook report rates`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field, create_model

from tallybook.analytics.pricers import list_pricer
from tallybook.analytics.rates import RATE_GROUPS, rates
from tallybook.web.api.errors import ApiRoute
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, csv_response, wants_csv
from tallybook.web.api.params import DaysOption, Member, ProviderFilter, Reading, report_query
from tallybook.web.api.schemas import Amount, Currency, Number, Strict, group_fields, plain

router = APIRouter(route_class=ApiRoute, tags=["rates and benchmark"])
GROUPS = tuple(g for g in RATE_GROUPS if g != "hour")
RATE_COLUMNS = ("currency", "input_tokens", "output_tokens", "input_rate_mtok", "output_rate_mtok",
                "blended_rate_mtok", "list_cost", "discount", "unpriced_models")
RateGroup: type[Strict] = create_model("RateGroup", __base__=Strict, **group_fields(GROUPS, names_too=False))


class RateRow(RateGroup):
    currency: Currency
    origin: Literal["reported"] = Field(description="Costs and rates are from vendor-reported cost.")
    input_tokens: int = Field(description="All input: uncached, cache reads and cache writes.")
    output_tokens: int
    input_cost: Amount
    output_cost: Amount
    other_cost: Amount = Field(description="Reported cost that is not per token (images, searches, ...).")
    input_rate_mtok: Number | None = Field(description="Per 1M input tokens, in `currency`.")
    output_rate_mtok: Number | None
    blended_rate_mtok: Number | None = Field(description="(3 x input rate + output rate) / 4.")
    list_cost: Amount | None = Field(description="The priced models' token usage at list price (USD).")
    list_origin: Literal["estimated"]
    discount: Number | None = Field(description="1 - reported token cost / list cost, as a share (0.12 = 12 %).")
    unpriced_models: list[str] = Field(description="Models without a list price, left out of the discount.")


class RateReport(Strict):
    first_day: date
    last_day: date
    group_by: list[str]
    rows: list[RateRow]


@router.get("/rates", response_model=RateReport, response_model_exclude_unset=True, responses=CSV_RESPONSE,
            summary="Effective rates and the discount vs list")
def effective_rates(
    request: Request, principal: Member, conn: Reading, window: DaysOption,
    group_by: str = Query("provider,model", description=f"Comma-separated, from: {', '.join(GROUPS)}."),
    provider: ProviderFilter = None,
    fmt: FormatOption = None,
) -> object:
    """Same as `tallybook report rates`."""
    start, end = window.window()
    query = report_query(principal, start, end, group_by, {"provider": provider} if provider else {})
    rows = [r.as_dict() for r in rates(conn, query, list_pricer=list_pricer)]
    first, last = start.date(), (end - timedelta(days=1)).date()
    if wants_csv(request, fmt):
        return csv_response(principal, rows, [*query.group_by, *RATE_COLUMNS], f"rates-{first}-{last}.csv")
    return RateReport(first_day=first, last_day=last, group_by=list(query.group_by),
                      rows=[RateRow(**plain(r)) for r in rows])
