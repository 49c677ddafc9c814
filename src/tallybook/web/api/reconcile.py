"""`GET /api/v1/reconcile`: per day and model, estimated vs vendor-reported cost and metered vs reported
tokens, deltas over the threshold flagged (`tallybook report reconcile`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from tallybook.analytics.pricers import NegotiatedPricer
from tallybook.analytics.reconcile import DEFAULT_THRESHOLD, reconcile
from tallybook.pricing.rules import load_rules
from tallybook.web.api.errors import ApiRoute
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, csv_response, wants_csv
from tallybook.web.api.params import DaysOption, Member, ProviderFilter, Reading, report_query, share
from tallybook.web.api.schemas import Amount, Currency, Number, Strict, number, plain

router = APIRouter(route_class=ApiRoute, tags=["reconciliation"])
COLUMNS = ("day", "provider", "model", "reported_cost", "estimated_cost", "cost_delta", "cost_delta_pct",
           "reported_tokens", "metered_tokens", "token_delta_pct", "flagged", "reason")


class ReconcileRow(Strict):
    day: str
    provider: str
    model: str | None
    currency: Currency
    reported_cost: Amount
    reported_origin: Literal["reported"]
    estimated_cost: Amount | None = Field(description="None when the model has no price.")
    estimated_origin: Literal["estimated"]
    cost_delta: Amount | None
    cost_delta_pct: Number | None
    reported_tokens: int
    metered_tokens: int = Field(description="Tokens the gateway metered for the same day and model.")
    token_delta_pct: Number | None
    flagged: bool
    reason: str


class Reconciliation(Strict):
    first_day: date
    last_day: date
    threshold: Number
    rows: list[ReconcileRow]


@router.get("/reconcile", response_model=Reconciliation, responses=CSV_RESPONSE, summary="Reconciliation")
def report_reconcile(
    request: Request, principal: Member, conn: Reading, window: DaysOption,
    threshold: str = Query(str(DEFAULT_THRESHOLD), pattern=r"^(0(\.\d+)?|1(\.0+)?)$",
                           description="Flag deltas above this share (0.01 = 1 %)."),
    flagged_only: bool = Query(False, description="Only rows over the threshold."),
    provider: ProviderFilter = None,
    fmt: FormatOption = None,
) -> object:
    """The estimate is list price, or the organisation's negotiated rate or discount where a pricing
    rule applies. Same as `tallybook report reconcile`."""
    limit = share(threshold, "threshold")
    start, end = window.window()
    query = report_query(principal, start, end, "", {"provider": provider} if provider else {})
    pricer = NegotiatedPricer(load_rules(conn, principal.org_id))
    rows = [r.as_dict(limit) for r in reconcile(conn, query, pricer)]
    if flagged_only:
        rows = [r for r in rows if r["flagged"]]
    first, last = start.date(), (end - timedelta(days=1)).date()
    if wants_csv(request, fmt):
        return csv_response(principal, rows, COLUMNS, f"reconcile-{first}-{last}.csv")
    return Reconciliation(first_day=first, last_day=last, threshold=number(limit),
                          rows=[ReconcileRow(**plain(r)) for r in rows])
