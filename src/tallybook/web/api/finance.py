"""`GET /api/v1/finance`: the monthly (or quarterly) finance report, as JSON or PDF
(`tallybook report finance`): per platform seat and usage cost beside the vendors' invoices, per team,
cost centre and top users through the identity map, unallocated spend, idle seats. It names people,
so it is for analysts and admins."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field

from tallybook.analytics.finance import finance_report, parse_period
from tallybook.web.api.errors import ApiRoute, invalid
from tallybook.web.api.params import MONTH_PATTERN, Analyst, Reading
from tallybook.web.api.schemas import Amount, Currency, Moment, Number, Strict, plain
from tallybook.web.api.seats import IdleSeat

router = APIRouter(route_class=ApiRoute, tags=["finance"])
QUARTER_PATTERN = r"^(20\d{2}|2100)-Q[1-4]$"


class PlatformCost(Strict):
    platform: str
    seat_cost: Amount = Field(description="Estimated from seat plan prices.")
    usage_cost: Amount = Field(description="Vendor-reported.")
    total: Amount
    previous_total: Amount = Field(description="The period before.")
    change_pct: Number | None
    vendor_reported: Amount | None = Field(description="The vendor's invoice for the period, if imported.")
    difference: Amount | None = Field(description="total - vendor_reported.")
    currency: Currency


class Share(Strict):
    name: str
    amount: Amount
    share_pct: Number
    seat_cost: Amount
    usage_cost: Amount
    currency: Currency
    team: str | None = None


class Subject(Strict):
    subject: str
    amount: Amount


class Unallocated(Strict):
    amount: Amount
    share_pct: Number
    currency: Currency
    largest: list[Subject]


class FinanceOut(Strict):
    period: str
    start: Moment
    end: Moment = Field(description="Exclusive.")
    currency: Currency
    total: Amount
    seat_total: Amount
    usage_total: Amount
    previous_total: Amount
    change_pct: Number | None
    origins: dict[str, str] = Field(description="seat: estimated; usage and vendor_reported: reported.")
    platforms: list[PlatformCost]
    teams: list[Share]
    cost_centres: list[Share]
    top_users: list[Share]
    unallocated: Unallocated
    idle_seats: list[IdleSeat]


PDF_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    "description": "The report as JSON, or as a PDF with `format=pdf`."}}


@router.get("/finance", response_model=FinanceOut, response_model_exclude_unset=True, responses=PDF_RESPONSE, summary="Finance report (analyst)")
def finance(
    principal: Analyst, conn: Reading,
    month: Annotated[str | None, Query(pattern=MONTH_PATTERN, description="A calendar month, YYYY-MM.")] = None,
    quarter: Annotated[str | None, Query(pattern=QUARTER_PATTERN, description="A quarter instead, YYYY-Qn.")] = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Za-z]{3}$", description="Report in this currency "
                                          "(default: the organisation's).")] = None,
    top: Annotated[int, Query(ge=1, le=1000, description="How many top users to list.")] = 10,
    fmt: Annotated[Literal["json", "pdf"] | None, Query(alias="format", description="`pdf` downloads it.")] = None,
) -> object:
    """Same as `tallybook report finance --month|--quarter`."""
    if bool(month) == bool(quarter):
        raise invalid("Give `month` (YYYY-MM) or `quarter` (YYYY-Qn).")
    period = parse_period(month or quarter or "")
    report = finance_report(conn, principal.org_id, period, currency=currency, top=top)
    if fmt == "pdf":
        from tallybook.cli.report_finance import pdf_bytes

        return Response(pdf_bytes(report, principal.org_slug), media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="finance-{period.label}.pdf"'})
    return FinanceOut(**plain(report.as_dict()))
