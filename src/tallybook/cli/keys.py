"""`tallybook keys`: the gateway's virtual keys. The secret is printed once; the ledger keeps only its hash."""

from __future__ import annotations

import json
import sys
from decimal import Decimal, InvalidOperation
from enum import Enum

import typer
from sqlalchemy import select, update

from tallybook import audit
from tallybook.cli.common import Context, Format, FormatOption, OrgOption, emit, err, handle_errors, utcnow
from tallybook.errors import ConfigError
from tallybook.gateway.keys import create_key, key_hint, revoke_key
from tallybook.gateway.limits import from_nanos, period_start
from tallybook.ledger import budgets
from tallybook.ledger import schema as t
from tallybook.money import fmt_amount

keys_app = typer.Typer(help="Virtual keys for the gateway: create, list, revoke.", no_args_is_help=True)


class Period(str, Enum):
    day = "day"
    month = "month"


def parse_budget(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        budget = Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter(f"{value!r} is not an amount; use e.g. 100 or 12.50.", param_hint="--budget") from None
    if not budget.is_finite() or budget <= 0:
        raise typer.BadParameter("A budget is an amount above zero.", param_hint="--budget")
    return budget


@keys_app.command("create")
@handle_errors
def create(
    name: str = typer.Option(..., "--name", help="What the key is for, e.g. 'support-bot prod'."),
    customer: str = typer.Option(None, "--customer", help="Customer its requests are attributed to."),
    feature: str = typer.Option(None, "--feature", help="Feature its requests are attributed to."),
    business_unit: str = typer.Option(None, "--business-unit", help="Business unit its requests are attributed to."),
    budget: str = typer.Option(None, "--budget", help="Spend cap per --period, e.g. 100."),
    period: Period = typer.Option(None, "--period", help="day or month (UTC); needed with --budget."),
    currency: str = typer.Option("USD", "--currency", help="Currency of --budget (the gateway prices in USD)."),
    rpm: int = typer.Option(None, "--rpm", min=1, help="Requests per minute."),
    tpm: int = typer.Option(None, "--tpm", min=1, help="Tokens per minute."),
    fmt: Format = FormatOption,
    org: str = OrgOption,
) -> None:
    """Create a virtual key and print its secret, once: it cannot be shown again.

    The secret goes to stdout alone (or as `secret` with --format json), everything else to stderr.

    Example: tallybook keys create --name support-bot --customer acme --budget 100 --period day --rpm 600
    """
    amount = parse_budget(budget)
    if amount is not None and period is None:
        raise typer.BadParameter("A budget needs a period: --period day or --period month.", param_hint="--period")
    if amount is None and period is not None:
        raise typer.BadParameter("--period goes with --budget.", param_hint="--period")
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        key, secret = create_key(
            conn, org_id=ctx.org_id, name=name, customer=customer, feature=feature, business_unit=business_unit,
            budget=amount, budget_currency=currency.upper(), budget_period=None if period is None else period.value,
            rpm=rpm, tpm=tpm)
        audit.record(conn, ctx.org_id, audit.cli_actor(), "key.created", "virtual_key", key.id, {
            "name": name, "hint": key_hint(secret), "customer": customer, "feature": feature,
            "business_unit": business_unit, "budget": None if amount is None else str(amount),
            "budget_currency": currency.upper(), "budget_period": None if period is None else period.value,
            "rpm": rpm, "tpm": tpm})
    if fmt is Format.json:
        sys.stdout.write(json.dumps({"id": key.id, "name": key.name, "secret": secret}) + "\n")
    else:
        sys.stdout.write(secret + "\n")
    err.print(f"Created key [bold]{key.id}[/] ({name}). [bold yellow]Store the secret now: it is shown once "
              f"and cannot be shown again[/] (tallybook keeps only its hash).", highlight=False)


@keys_app.command("list")
@handle_errors
def list_keys(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """Show the organisation's keys with their budget and what they spent this period (never the secret).

    Example: tallybook keys list --format json
    """
    ctx = Context(org)
    c = t.virtual_keys.c
    now = utcnow()
    with ctx.engine.connect() as conn:
        found = conn.execute(select(t.virtual_keys).where(c.org_id == ctx.org_id).order_by(c.created_at, c.id)).all()
        periods = {f"key:{r.id}": period_start(r.budget_period, now) for r in found if r.budget is not None}
        spent = budgets.spent_in(conn, ctx.org_id, periods)
    rows = []
    for r in found:
        scope = f"key:{r.id}"
        rows.append({
            "id": r.id, "name": r.name, "hint": r.key_hint, "customer": r.customer, "feature": r.feature,
            "budget": None if r.budget is None else f"{fmt_amount(Decimal(r.budget), 2)} {r.budget_currency}/{r.budget_period}",
            "spent_this_period": None if scope not in spent else from_nanos(spent[scope]),
            "rpm": r.rpm, "tpm": r.tpm, "status": r.status, "created_at": r.created_at,
        })
    emit(rows, fmt, ["id", "name", "hint", "customer", "feature", "budget", "spent_this_period", "rpm", "tpm",
                     "status", "created_at"], title="Virtual keys")


@keys_app.command("update")
@handle_errors
def update_key(
    key_id: str = typer.Argument(..., help="The key's id (vk_...), from `tallybook keys list`."),
    name: str = typer.Option(None, "--name", help="A new name."),
    budget: str = typer.Option(None, "--budget", help="A new spend cap per period."),
    period: Period = typer.Option(None, "--period", help="day or month (UTC)."),
    no_budget: bool = typer.Option(False, "--no-budget", help="Remove the budget."),
    rpm: int = typer.Option(None, "--rpm", min=0, help="Requests per minute; 0 removes the limit."),
    tpm: int = typer.Option(None, "--tpm", min=0, help="Tokens per minute; 0 removes the limit."),
    org: str = OrgOption,
) -> None:
    """Change a key's name, budget or rate limits; gateways apply it within seconds (the secret stays).

    A raised budget admits again at once; spend already settled this period still counts.

    Example: tallybook keys update vk_abcdefghijklmnop --budget 250 --period month
    """
    amount = parse_budget(budget)
    if no_budget and (amount is not None or period is not None):
        raise typer.BadParameter("--no-budget goes alone, without --budget or --period.", param_hint="--no-budget")
    values: dict[str, object] = {}
    if name is not None:
        values["name"] = name
    if no_budget:
        values.update(budget=None, budget_period=None)
    if amount is not None:
        values["budget"] = str(amount)
    if period is not None:
        values["budget_period"] = period.value
    if rpm is not None:
        values["rpm"] = rpm or None
    if tpm is not None:
        values["tpm"] = tpm or None
    if not values:
        raise typer.BadParameter("Nothing to change: give --name, --budget, --period, --no-budget, --rpm or --tpm.")
    ctx = Context(org)
    c = t.virtual_keys.c
    with ctx.engine.begin() as conn:
        row = conn.execute(select(c.budget, c.budget_period).where(
            c.org_id == ctx.org_id, c.id == key_id, c.status == "active")).first()
        if row is None:
            raise ConfigError(f"No active key {key_id!r}; see `tallybook keys list`.")
        has_budget = values.get("budget", row.budget) is not None
        if has_budget and values.get("budget_period", row.budget_period) is None:
            raise typer.BadParameter("A budget needs a period: --period day or --period month.", param_hint="--period")
        if not has_budget and values.get("budget_period") is not None:
            raise typer.BadParameter("--period goes with --budget.", param_hint="--period")
        conn.execute(update(t.virtual_keys).where(c.id == key_id).values(**values))
        audit.record(conn, ctx.org_id, audit.cli_actor(), "key.updated", "virtual_key", key_id, values)
    err.print(f"Updated key {key_id}.")


@keys_app.command("revoke")
@handle_errors
def revoke(key_id: str = typer.Argument(..., help="The key's id (vk_...), from `tallybook keys list`."),
           org: str = OrgOption) -> None:
    """Revoke a key: gateways refuse it within seconds (their key cache refreshes); its history stays.

    Example: tallybook keys revoke vk_abcdefghijklmnop
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        if not revoke_key(conn, ctx.org_id, key_id):
            raise ConfigError(f"No active key {key_id!r}; see `tallybook keys list`.")
        audit.record(conn, ctx.org_id, audit.cli_actor(), "key.revoked", "virtual_key", key_id)
    err.print(f"Revoked key {key_id}.")
