"""`/api/v1/billing/...`: which Stripe customer each customer is, which Stripe meter each measure goes to,
the meter-event queue, and the invoice preview (`tallybook billing customers|meters|status|preview`),
through the same functions as the CLI (tallybook.billing.setup, .status, .preview).

Sending to Stripe stays with `tallybook billing sync` (and `serve`'s schedule); the API reads the queue.
Preview amounts are estimated: Stripe's invoice applies its own rounding and tax."""

from __future__ import annotations

from typing import Annotated, Literal

import stripe
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tallybook import audit
from tallybook.billing import setup
from tallybook.billing.preview import preview as build_preview
from tallybook.billing.status import queue_status
from tallybook.billing.stripe_client import classify, describe, make_client
from tallybook.web.api.errors import PROVIDER_ERRORS, ApiRoute, invalid, not_found
from tallybook.web.api.exports import CSV_RESPONSE, FormatOption, csv_response, wants_csv
from tallybook.web.api.params import MONTH_PATTERN, Admin, Analyst, Reading, actor, engine, first_of_month
from tallybook.web.api.schemas import Amount, Currency, Number, Strict, number
from tallybook.web.errors import ApiError

router = APIRouter(route_class=ApiRoute, tags=["billing"])
Measure = Literal["cost_micros", "input_tokens", "cache_read_tokens", "output_tokens", "total_tokens", "requests"]
CustomerName = Annotated[str, Field(min_length=1, max_length=200)]
LINE_COLUMNS = ["meter", "event_name", "measure", "quantity", "unit_price", "amount", "currency", "origin"]


class CustomerMap(Strict):
    customer: str
    stripe_customer_id: str


class Customers(Strict):
    customers: list[CustomerMap]


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: CustomerName = Field(description="The customer name requests are attributed to.")
    stripe_customer_id: str = Field(pattern=r"^cus_[A-Za-z0-9]{1,100}$", description="Checked in Stripe first.")


class MeterOut(Strict):
    name: str
    event_name: str
    measure: Measure
    unit_price: Number | None = Field(description="What Stripe charges per unit, for previews.")
    currency: Currency
    stripe_meter_id: str | None


class Meters(Strict):
    meters: list[MeterOut]


class MeterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=100)]
    event_name: Annotated[str, Field(min_length=1, max_length=100, description="The Stripe meter's event_name.")]
    measure: Measure = "cost_micros"
    unit_price: str | None = Field(None, pattern=r"^\d{1,12}(\.\d{1,12})?$",
                                   description="Price per unit (cost_micros: 0.000001 by default).")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    stripe_meter_id: str | None = Field(None, pattern=r"^mtr_[A-Za-z0-9_]{1,100}$",
                                        description="The Stripe meter (create it in Stripe or with the CLI).")


class QueueRow(Strict):
    status: Literal["pending", "sent", "cancel_pending", "cancelled", "failed"]
    events: int
    last_error: str | None


class Queue(Strict):
    events: list[QueueRow]


class LineItem(Strict):
    meter: str
    event_name: str
    measure: Measure
    quantity: int
    unit_price: Number | None
    amount: Amount | None = Field(description="quantity x unit_price; null when the meter has no unit price.")
    currency: Currency
    origin: Literal["estimated"]


class UsageRow(Strict):
    provider: str
    model: str
    requests: int
    input_tokens: int
    cache_read_tokens: int
    output_tokens: int
    list_cost: Amount
    customer_cost: Amount = Field(description="The list cost with the markup rules: what the customer pays.")
    currency: Currency
    origin: Literal["estimated"]


class Preview(Strict):
    customer: str
    stripe_customer_id: str | None = Field(description="null: the customer is not mapped, so not billed.")
    month: str
    lines: list[LineItem]
    totals: dict[str, Amount] = Field(description="Sum of the line amounts per currency (estimated).")
    usage: list[UsageRow] = Field(description="The priced gateway usage the lines come from, per provider and model.")
    unpriced_requests: int = Field(description="Requests of models with no list price: not billed.")


def _meter_out(m: setup.Meter) -> MeterOut:
    return MeterOut(name=m.name, event_name=m.event_name, measure=m.measure,
                    unit_price=number(m.unit_price), currency=m.currency, stripe_meter_id=m.stripe_meter_id)


@router.get("/billing/customers", response_model=Customers, summary="The Stripe customer map (analyst)")
def list_customers(principal: Analyst, conn: Reading) -> Customers:
    """Same as `tallybook billing customers list`."""
    return Customers(customers=[CustomerMap(customer=k, stripe_customer_id=v)
                                for k, v in setup.customers(conn, principal.org_id).items()])


@router.post("/billing/customers", response_model=CustomerMap, status_code=201, responses=PROVIDER_ERRORS,
             summary="Map a customer to a Stripe customer (admin)")
def map_customer(body: CustomerIn, request: Request, principal: Admin) -> CustomerMap:
    """The Stripe customer is checked in Stripe first. Same as `tallybook billing customers map --stripe-customer`."""
    client = make_client(request.app.state.settings)
    try:
        client.v1.customers.retrieve(body.stripe_customer_id)
    except stripe.StripeError as e:
        message = f"Checking {body.stripe_customer_id}: {describe(e)}"
        if classify(e) == "transient":
            raise ApiError(502, "provider_unavailable", message) from None
        raise invalid(message) from None
    with engine(request).begin() as conn:
        setup.map_customer(conn, principal.org_id, body.customer, body.stripe_customer_id)
        audit.record(conn, principal.org_id, actor(principal), "billing_customer.mapped", "customer", body.customer,
                     {"stripe_customer_id": body.stripe_customer_id})
    return CustomerMap(customer=body.customer, stripe_customer_id=body.stripe_customer_id)


@router.delete("/billing/customers/{customer}", response_model=CustomerMap, summary="Stop billing a customer (admin)")
def unmap_customer(customer: Annotated[str, Path(min_length=1, max_length=200)], request: Request, principal: Admin) -> CustomerMap:
    """Events already sent stay in Stripe. Same as `tallybook billing customers remove`."""
    with engine(request).begin() as conn:
        stripe_id = setup.customers(conn, principal.org_id).get(customer)
        if stripe_id is None:
            raise not_found(f"Customer {customer!r} is not mapped in this organisation.")
        setup.unmap_customer(conn, principal.org_id, customer)
        audit.record(conn, principal.org_id, actor(principal), "billing_customer.unmapped", "customer", customer)
    return CustomerMap(customer=customer, stripe_customer_id=stripe_id)


@router.get("/billing/meters", response_model=Meters, summary="The Stripe meters usage goes to (analyst)")
def list_meters(principal: Analyst, conn: Reading) -> Meters:
    """Same as `tallybook billing meters list`."""
    return Meters(meters=[_meter_out(m) for m in setup.meters(conn, principal.org_id).values()])


@router.post("/billing/meters", response_model=MeterOut, status_code=201,
             summary="Add or replace a meter (admin)")
def save_meter(body: MeterIn, request: Request, principal: Admin) -> MeterOut:
    """A meter of the same name is replaced. Same as `tallybook billing meters add` without --create."""
    with engine(request).begin() as conn:
        meter = setup.add_meter(conn, principal.org_id, body.name, body.event_name, body.measure,
                                currency=body.currency, unit_price=body.unit_price,
                                stripe_meter_id=body.stripe_meter_id)
        audit.record(conn, principal.org_id, actor(principal), "billing_meter.saved", "billing_meter", body.name, {
            "event_name": body.event_name, "measure": body.measure, "unit_price": str(meter.unit_price),
            "stripe_meter_id": body.stripe_meter_id})
    return _meter_out(meter)


@router.get("/billing/status", response_model=Queue, summary="The meter-event queue by status (analyst)")
def billing_status(principal: Analyst, conn: Reading) -> Queue:
    """Pending, sent, cancel_pending, cancelled and failed events, with the last error. Same as `tallybook billing status`."""
    return Queue(events=[QueueRow(**r) for r in queue_status(conn, principal.org_id)])


@router.get("/billing/preview", response_model=Preview, responses=CSV_RESPONSE,
            summary="What Stripe will bill a customer for a month (analyst)")
def billing_preview(
    request: Request, principal: Analyst, conn: Reading,
    customer: Annotated[str, Query(min_length=1, max_length=200, description="The customer's name.")],
    month: Annotated[str, Query(pattern=MONTH_PATTERN, description="The month, YYYY-MM.")],
    fmt: FormatOption = None,
) -> Preview | Response:
    """Line items (quantity per meter x unit price) and the priced usage they come from.
    Same as `tallybook billing preview --customer C --period YYYY-MM`; CSV holds the line items."""
    start, end = first_of_month(month)
    found = build_preview(conn, principal.org_id, customer, start, end)
    lines = [line.as_dict() for line in found.lines]
    if wants_csv(request, fmt):
        return csv_response(principal, lines, LINE_COLUMNS, f"billing-preview-{month}.csv")
    return Preview(
        customer=found.customer, stripe_customer_id=found.stripe_customer_id, month=month,
        lines=[LineItem(**{**line, "unit_price": number(line["unit_price"]),  # type: ignore[arg-type]
                           "amount": number(line["amount"])}) for line in lines],  # type: ignore[arg-type]
        totals={currency: number(total) for currency, total in found.totals().items()},
        usage=[UsageRow(**{**row, "list_cost": number(row["list_cost"]),
                           "customer_cost": number(row["customer_cost"]), "origin": "estimated"})
               for row in found.usage],
        unpriced_requests=found.unpriced_requests)
