"""Billing (admins and analysts): which Stripe customer each customer is, which meter each measure goes to,
the meter-event queue, and the invoice preview for a chosen customer and month with its CSV
(`tallybook billing customers|meters|status|preview`, the same functions). Amounts are estimated."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tallybook.billing import setup
from tallybook.billing.preview import preview as build_preview
from tallybook.billing.status import queue_status
from tallybook.errors import BillingError
from tallybook.web.auth import Principal, require_page
from tallybook.web.pages.base import Column, PageError, Table, month_window, respond, this_month

router = APIRouter(include_in_schema=False)
analyst_page = require_page("analyst")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
CUSTOMER_COLUMNS = (Column("customer", label="billing.col_customer"),
                    Column("stripe_customer_id", label="billing.col_stripe_customer"))
METER_COLUMNS = (Column("name"), Column("event_name", label="billing.col_event_name"),
                 Column("measure", label="billing.col_measure"), Column("unit_price", "rate", "billing.col_unit_price"),
                 Column("currency"), Column("stripe_meter_id", label="billing.col_stripe_meter"))
QUEUE_COLUMNS = (Column("status"), Column("events", "int", "billing.col_events"), Column("last_error"))
LINE_COLUMNS = (Column("meter", label="billing.col_meter"), Column("event_name", label="billing.col_event_name"),
                Column("measure", label="billing.col_measure"), Column("quantity", "int", "billing.col_quantity"),
                Column("unit_price", "rate", "billing.col_unit_price"), Column("amount", "money"),
                Column("currency"), Column("origin"))
USAGE_COLUMNS = (Column("provider"), Column("model"), Column("requests", "int"), Column("input_tokens", "int"),
                 Column("cache_read_tokens", "int"), Column("output_tokens", "int"), Column("list_cost", "money"),
                 Column("customer_cost", "money", "billing.col_customer_cost"), Column("currency"))


@router.get("/billing")
def billing_page(request: Request, principal: Principal = Depends(analyst_page)) -> Response:
    month = request.query_params.get("month") or this_month().month or ""
    if not MONTH.match(month):
        raise PageError(400, "error.bad_date")
    window = month_window(month)
    preview_error: str | None = None
    lines: list[dict[str, object]] = []
    usage: list[dict[str, object]] = []
    totals: dict[str, object] = {}
    with request.app.state.engine.connect() as conn:
        customers = setup.customers(conn, principal.org_id)
        meters = list(setup.meters(conn, principal.org_id).values())
        queue = queue_status(conn, principal.org_id)
        customer = (request.query_params.get("customer") or next(iter(customers), "")).strip()[:200]
        if customer:
            try:
                found = build_preview(conn, principal.org_id, customer, window.start, window.end)
            except BillingError as exc:
                preview_error = str(exc)
            else:
                lines = [line.as_dict() for line in found.lines]
                usage = found.usage
                totals = dict(found.totals())
    tables = [
        Table("customers", "billing.customers", CUSTOMER_COLUMNS,
              [{"customer": k, "stripe_customer_id": v} for k, v in customers.items()], empty="billing.no_customers"),
        Table("meters", "billing.meters", METER_COLUMNS,
              [{"name": m.name, "event_name": m.event_name, "measure": m.measure, "unit_price": m.unit_price,
                "currency": m.currency, "stripe_meter_id": m.stripe_meter_id} for m in meters],
              empty="billing.no_meters"),
        Table("queue", "billing.queue", QUEUE_COLUMNS, queue, note="billing.queue_note", empty="billing.no_events"),
        Table("lines", "billing.lines", LINE_COLUMNS, lines, note="billing.lines_note", empty="billing.no_lines"),
        Table("usage", "billing.usage", USAGE_COLUMNS, usage, note="billing.usage_note", empty="table.empty"),
    ]
    return respond(request, principal, "billing.html", tables, title="billing.title", month=month,
                   customer=customer, customers=list(customers), totals=totals, preview_error=preview_error)
