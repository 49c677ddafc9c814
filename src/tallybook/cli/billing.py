"""`tallybook billing ...`: usage invoicing through Stripe Billing Meters."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import stripe
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy import select

from tallybook import audit
from tallybook.billing import setup
from tallybook.billing.preview import preview as build_preview
from tallybook.billing.queue import drain, plan, utcnow
from tallybook.billing.status import queue_status
from tallybook.billing.stripe_client import describe, make_client
from tallybook.cli.common import (
    Context,
    Format,
    FormatOption,
    OrgOption,
    day_range,
    emit,
    err,
    handle_errors,
    jsonable,
    parse_month,
)
from tallybook.errors import BillingError
from tallybook.ledger import schema_billing as tb

T = TypeVar("T")

billing_app = typer.Typer(help="Usage invoicing through Stripe Billing Meters.", no_args_is_help=True)
customers_app = typer.Typer(help="Which Stripe customer each tallybook customer is.", no_args_is_help=True)
meters_app = typer.Typer(help="Which Stripe meter each measure goes to.", no_args_is_help=True)
billing_app.add_typer(customers_app, name="customers")
billing_app.add_typer(meters_app, name="meters")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
    app.add_typer(billing_app, name="billing")


def _stripe_call(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except stripe.StripeError as e:
        raise BillingError(f"{what}: {describe(e)}") from None


@customers_app.command("map")
@handle_errors
def customers_map(
    customer: str = typer.Option(..., "--customer", help="The customer name requests are attributed to."),
    stripe_customer: str = typer.Option(None, "--stripe-customer", help="Its Stripe customer id (cus_...)."),
    create: bool = typer.Option(False, "--create", help="Create the Stripe customer instead."),
    email: str = typer.Option(None, "--email", help="Email of the customer created with --create."),
    org: str = OrgOption,
) -> None:
    """Map a customer to a Stripe customer (checked in Stripe), or create one with --create.

    Example: tallybook billing customers map --customer acme --stripe-customer cus_QX12abc
    """
    ctx = Context(org)
    client = make_client(ctx.settings)
    if create:
        made = _stripe_call("Creating the Stripe customer", lambda: client.v1.customers.create(
            params={"name": customer, **({"email": email} if email else {}), "metadata": {"tallybook_customer": customer}}))
        stripe_customer = made.id
    elif not stripe_customer:
        raise BillingError("Give --stripe-customer cus_... or --create.")
    else:
        _stripe_call(f"Checking {stripe_customer}", lambda: client.v1.customers.retrieve(stripe_customer))
    with ctx.engine.begin() as conn:
        setup.map_customer(conn, ctx.org_id, customer, stripe_customer)
        audit.record(conn, ctx.org_id, audit.cli_actor(), "billing_customer.mapped", "customer", customer,
                     {"stripe_customer_id": stripe_customer})
    err.print(f"Customer {customer!r} is billed as Stripe customer {stripe_customer}.")


@customers_app.command("list")
@handle_errors
def customers_list(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """The customer map.

    Example: tallybook billing customers list --format json
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        found = setup.customers(conn, ctx.org_id)
    emit([{"customer": k, "stripe_customer_id": v} for k, v in found.items()], fmt,
         ["customer", "stripe_customer_id"], title="Billing customers")


@customers_app.command("remove")
@handle_errors
def customers_remove(customer: str = typer.Argument(...), org: str = OrgOption) -> None:
    """Stop billing a customer (events already sent stay in Stripe).

    Example: tallybook billing customers remove acme
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        setup.unmap_customer(conn, ctx.org_id, customer)
        audit.record(conn, ctx.org_id, audit.cli_actor(), "billing_customer.unmapped", "customer", customer)
    err.print(f"Customer {customer!r} is no longer billed.")


@meters_app.command("add")
@handle_errors
def meters_add(
    name: str = typer.Argument(..., help="A name for the meter, e.g. llm-cost."),
    event_name: str = typer.Option(..., "--event-name", help="The Stripe meter's event_name."),
    measure: str = typer.Option("cost_micros", "--measure", help=", ".join(setup.MEASURES)),
    unit_price: str = typer.Option(None, "--unit-price", help="The Stripe price per unit, for previews "
                                   "(cost_micros: 0.000001 by default)."),
    currency: str = typer.Option("USD", "--currency"),
    create: bool = typer.Option(False, "--create", help="Create the meter in Stripe (sum aggregation)."),
    org: str = OrgOption,
) -> None:
    """Send a measure of each customer's usage to a Stripe meter, hourly.

    Example: tallybook billing meters add llm-cost --event-name tallybook_llm_cost --measure cost_micros --create
    """
    ctx = Context(org)
    meter_id = None
    if create:
        client = make_client(ctx.settings)
        made = _stripe_call("Creating the Stripe meter", lambda: client.v1.billing.meters.create(params={
            "display_name": f"tallybook {name}", "event_name": event_name,
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"}}))
        meter_id = made.id
    with ctx.engine.begin() as conn:
        meter = setup.add_meter(conn, ctx.org_id, name, event_name, measure, currency=currency,
                                unit_price=unit_price, stripe_meter_id=meter_id)
        audit.record(conn, ctx.org_id, audit.cli_actor(), "billing_meter.saved", "billing_meter", name, {
            "event_name": event_name, "measure": measure, "unit_price": str(meter.unit_price),
            "stripe_meter_id": meter_id})
    err.print(f"Meter {meter.name!r}: {meter.measure} -> Stripe event {meter.event_name!r}"
              + (f" ({meter_id})" if meter_id else ""))


@meters_app.command("list")
@handle_errors
def meters_list(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """The meters usage is sent to.

    Example: tallybook billing meters list
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        found = setup.meters(conn, ctx.org_id).values()
    emit([{"name": m.name, "event_name": m.event_name, "measure": m.measure, "unit_price": m.unit_price,
           "currency": m.currency, "stripe_meter_id": m.stripe_meter_id} for m in found], fmt,
         ["name", "event_name", "measure", "unit_price", "currency", "stripe_meter_id"], title="Billing meters")


@billing_app.command("sync")
@handle_errors
def sync(
    since: str = typer.Option(None, "--from", help="First UTC day (default: 34 days ago, Stripe's window)."),
    until: str = typer.Option(None, "--to", help="Last UTC day, inclusive (default: today)."),
    org: str = OrgOption,
) -> None:
    """Queue each customer's hourly usage as meter events and send the queue to Stripe.

    Each (customer, meter, hour) has a deterministic identifier, so running it twice sends nothing
    twice; changed hours are corrected by cancelling the sent event and sending a new one. While
    Stripe is unreachable, events stay queued and the next run sends them.

    Example: tallybook billing sync --from 2026-11-01
    """
    ctx = Context(org)
    now = utcnow()
    start, end = day_range(since, until, since_opt="--from", until_opt="--to")
    start = start or (now - timedelta(days=34)).replace(hour=0, minute=0, second=0, microsecond=0)
    end = end or now
    planned = plan(ctx.engine, ctx.org_id, start, end, now=now, settle_minutes=ctx.settings.billing_settle_minutes)
    if planned.unmapped:
        err.print(f"[yellow]Not billed[/] (no Stripe customer; map with `tallybook billing customers map`): "
                  f"{', '.join(sorted(planned.unmapped))}")
    if planned.too_old:
        err.print(f"[yellow]{planned.too_old} hour(s) changed but are older than Stripe's 35 days[/]: "
                  "they cannot be sent or corrected as meter events; issue a credit note in Stripe.")
    client = make_client(ctx.settings)
    with Progress(TextColumn("Sending to Stripe"), BarColumn(), MofNCompleteColumn(), console=err) as bar:
        task = bar.add_task("send", total=None)
        drained = drain(ctx.engine, client, ctx.org_id, now=now,
                        on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    with ctx.engine.begin() as conn:
        audit.record(conn, ctx.org_id, audit.cli_actor(), "billing.synced", "billing", None, {
            "from": start.isoformat(), "to": end.isoformat(), "sent": drained.sent, "cancelled": drained.cancelled,
            "failed": drained.failed, "pending": drained.pending})
    err.print(f"Queued {planned.new} new and {planned.corrected} corrected hour(s); {planned.unchanged} unchanged. "
              f"Sent {drained.sent}, cancelled {drained.cancelled}, failed {drained.failed}.")
    if drained.error:
        raise BillingError(f"Stripe could not be reached; {drained.pending} event(s) stay queued for the next "
                           f"`tallybook billing sync` ({drained.error}).")


@billing_app.command("status")
@handle_errors
def status(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """The meter-event queue by status (pending, sent, cancel_pending, cancelled, failed), with the last error.

    Example: tallybook billing status --format json
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        rows = queue_status(conn, ctx.org_id)
    emit(rows, fmt, ["status", "events", "last_error"], title="Stripe meter events")


@billing_app.command("preview")
@handle_errors
def preview_cmd(
    customer: str = typer.Option(..., "--customer"),
    period: str = typer.Option(..., "--period", help="The month, YYYY-MM."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """The line items Stripe will bill a customer for a month: quantity per meter x unit price.

    JSON adds the priced usage per provider and model (list cost and the customer's price with markups).

    Example: tallybook billing preview --customer acme --period 2026-11 --format csv
    """
    ctx = Context(org)
    start, end = parse_month(period)
    with ctx.engine.connect() as conn:
        found = build_preview(conn, ctx.org_id, customer, start, end)
    if fmt is Format.json:
        sys.stdout.write(json.dumps(jsonable({
            "customer": found.customer, "stripe_customer_id": found.stripe_customer_id, "period": period,
            "lines": [line.as_dict() for line in found.lines], "totals": found.totals(),
            "usage": found.usage, "unpriced_requests": found.unpriced_requests}), indent=2) + "\n")
        return
    emit([line.as_dict() for line in found.lines], fmt,
         ["meter", "event_name", "measure", "quantity", "unit_price", "amount", "currency"],
         title=f"Stripe preview: {customer}, {period}")
    if fmt is Format.table:
        for currency, total in found.totals().items():
            err.print(f"Total {total:.2f} {currency} (estimated; Stripe's invoice applies its own rounding and tax)")
        if found.unpriced_requests:
            err.print(f"[yellow]{found.unpriced_requests} request(s) of models with no list price are not billed.[/]")


@billing_app.command("invoices")
@handle_errors
def invoices(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """Invoice status as Stripe's webhook reported it (paid, payment_failed, ...).

    Example: tallybook billing invoices
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        mapped = set(setup.customers(conn, ctx.org_id).values())
        rows = [dict(r._mapping) for r in conn.execute(select(tb.billing_invoices).order_by(
            tb.billing_invoices.c.updated_at.desc())) if r.stripe_customer_id in mapped]
    emit(rows, fmt, ["invoice_id", "stripe_customer_id", "status", "amount_due", "currency", "updated_at"],
         title="Stripe invoices")

