"""`GET /api/v1/savings` (caching, batching and model-mix savings in dollars, each with its assumption) and
`GET /api/v1/commitments` (the committed spend that would have minimised past months' cost), as
`tallybook report savings|commitments`."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from tallybook.analytics.optimize import advise_commitment, parse_schedule, savings
from tallybook.analytics.pricers import unit_prices
from tallybook.analytics.rollups import ReportQuery, cost_report
from tallybook.analytics.trends import period_starts
from tallybook.web.api.errors import ApiRoute, invalid
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, columns_of, csv_response, wants_csv
from tallybook.web.api.params import DaysOption, Member, Reading, midnight, report_query, share, today
from tallybook.web.api.schemas import Amount, Currency, Number, Strict, number, plain

router = APIRouter(route_class=ApiRoute, tags=["optimisation"])
SHARE = r"^(0(\.\d+)?|1(\.0+)?)$"


class Opportunity(Strict):
    kind: Literal["cache", "batch", "model_mix"]
    provider: str
    model: str
    current: str = Field(description="The measured figure, e.g. 'cache hit rate 12.0 %'.")
    assumption: str
    monthly_saving: Amount = Field(description="Per 30 days.")
    window_saving: Amount
    currency: Currency
    origin: Literal["estimated"]


class Savings(Strict):
    first_day: date
    last_day: date
    total_monthly_saving: Amount = Field(description="Sum of every option; options of one model overlap.")
    currency: Currency
    origin: Literal["estimated"]
    rows: list[Opportunity]


@router.get("/savings", response_model=Savings, responses=CSV_RESPONSE, summary="Savings opportunities")
def report_savings(
    request: Request, principal: Member, conn: Reading, window: DaysOption,
    cache_target: str = Query("0.5", pattern=SHARE, description="Cache hit rate to reach (share of input)."),
    batch_share: str = Query("0.2", pattern=SHARE, description="Share of non-batch traffic that could wait."),
    substitute_share: str = Query("0.3", pattern=SHARE, description="Share moved to a cheaper model."),
    fmt: FormatOption = None,
) -> object:
    """USD per 30 days, estimated at list price. Same as `tallybook report savings`."""
    start, end = window.window()
    query = report_query(principal, start, end, "", {})
    found = savings(conn, query, unit_prices, cache_target=share(cache_target, "cache_target"),
                    batch_share=share(batch_share, "batch_share"),
                    substitute_share=share(substitute_share, "substitute_share"))
    rows = [o.as_dict() for o in sorted(found, key=lambda o: -o.monthly_saving)]
    total = sum((o.monthly_saving for o in found), Decimal(0)).quantize(Decimal("0.01"))
    first, last = start.date(), (end - timedelta(days=1)).date()
    if wants_csv(request, fmt):
        return csv_response(principal, rows, columns_of(rows, ["kind", "provider", "model"]),
                            f"savings-{first}-{last}.csv")
    return Savings(first_day=first, last_day=last, total_monthly_saving=number(total), currency="USD",
                   origin="estimated", rows=[Opportunity(**plain(r)) for r in rows])


class Commitment(Strict):
    first_month: str
    last_month: str
    commit_per_month: Amount = Field(description="0 means: stay on demand.")
    discount: Number
    cost_with_commitment: Amount
    on_demand_cost: Amount
    saving: Amount
    break_even_utilisation: Number | None
    months: int
    monthly_spend: list[Amount] = Field(description="Reported USD spend of each month used.")
    schedule: str
    currency: Currency
    origin: Literal["estimated"]


@router.get("/commitments", response_model=Commitment, summary="Commitment advice")
def commitments(
    principal: Member, conn: Reading,
    months: int = Query(3, ge=1, le=24, description="Full months of history to use."),
    schedule: str = Query("5000:0.05,20000:0.10,50000:0.15", max_length=500,
                          description="Monthly commit:discount tiers, e.g. 5000:0.05,20000:0.10."),
    provider: str | None = Query(None, description="Only this provider's spend."),
) -> Commitment:
    """Same as `tallybook report commitments`: the last `months` full months of reported USD spend."""
    try:
        tiers = parse_schedule(schedule)
    except (InvalidOperation, ValueError):
        raise invalid("`schedule` must be commit:discount pairs, e.g. 5000:0.05,20000:0.10.") from None
    if any(not (c.is_finite() and d.is_finite()) or c < 0 or not 0 <= d < 1 for c, d in tiers):
        raise invalid("`schedule`: each commit is an amount of at least 0 and each discount a share below 1.")
    end = today().replace(day=1)
    start = end
    for _ in range(months):
        start = (start - timedelta(days=1)).replace(day=1)
    query = ReportQuery(org_id=principal.org_id, start=midnight(start), end=midnight(end), group_by=["month"],
                        filters={"provider": [provider]} if provider else {})
    spend = {r["month"]: r["amount"] for r in cost_report(conn, query) if r["currency"] == "USD"}
    monthly = [spend.get(f"{m:%Y-%m}", Decimal(0)) for m in period_starts(start, end, "month")]
    advice = advise_commitment(monthly, tiers)
    return Commitment(**plain(advice.as_dict()), first_month=f"{start:%Y-%m}",
                      last_month=f"{end - timedelta(days=1):%Y-%m}", monthly_spend=[number(m) for m in monthly],
                      schedule=schedule)
