"""`tallybook identities ...` and `tallybook seats ...`: who is behind each key, and the seats paid for."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import typer

from tallybook.analytics.allocation import unknown_identities
from tallybook.analytics.seats import IDLE_DAYS, idle_seats, seat_list
from tallybook.cli.common import (
    Context,
    Format,
    FormatOption,
    OrgOption,
    day_range,
    emit,
    err,
    handle_errors,
    parse_day,
    utcnow,
)
from tallybook.cli.imports import read_file
from tallybook.connectors.identity_file import parse_assignments, parse_identities, parse_plans
from tallybook.errors import ConfigError
from tallybook.ledger.identities import SINCE_ALWAYS, apply_identities, load_identities
from tallybook.ledger.seats import PERIODS, SeatPlan, assign, load_plans, put_assignment, release, set_plan

identities_app = typer.Typer(help="The identity map: API keys, e-mails and projects -> person, team, "
                             "cost centre.", no_args_is_help=True)
seats_app = typer.Typer(help="Seat plans (price per seat per period) and who holds a seat.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
    app.add_typer(identities_app, name="identities")
    app.add_typer(seats_app, name="seats")


def _midnight(value: str | None, option: str) -> datetime | None:
    return datetime.combine(parse_day(value, option), datetime.min.time()) if value else None


@identities_app.command("import")
@handle_errors
def identities_import(
    file: Path = typer.Argument(..., help="CSV: kind,value,person,team,cost_centre[,effective_from]."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Apply the finance team's identity map (all rows or none); each change is a new version.

    kind is api_key (key id or name), email or project (project or workspace id). A row with an
    effective_from date (YYYY-MM-DD) changes the mapping from that day on only, so a person who moves
    team on the 15th takes only their spend from the 15th along. Importing the same file again
    changes nothing.

    Example: tallybook identities import identity-map.csv
    """
    rows = parse_identities(read_file(file), str(file))
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        changes = apply_identities(conn, ctx.org_id, rows, source_file=file.name)
    summary = {"rows": len(rows), "added": changes.added, "changed": changes.changed, "unchanged": changes.unchanged}
    if fmt is Format.table:
        err.print(f"Identity map from {file.name}: {changes.added} new, {changes.changed} changed, "
                  f"{changes.unchanged} unchanged.")
    else:
        emit([summary], fmt, list(summary))


@identities_app.command("list")
@handle_errors
def identities_list(
    at: str = typer.Option(None, "--at", help="Only the mappings in force on this day (YYYY-MM-DD)."),
    history: bool = typer.Option(False, "--history", help="Every version, with its effective dates."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """The identity map: what each key, e-mail and project maps to (today, on --at, or every version).

    Example: tallybook identities list --at 2026-10-15 --format csv
    """
    ctx = Context(org)
    day = _midnight(at, "--at") or utcnow()
    with ctx.engine.connect() as conn:
        rows = load_identities(conn, ctx.org_id).rows()
    if not history:
        rows = [r for r in rows if r["effective_from"] <= day  # type: ignore[operator]
                and (r["effective_to"] is None or day < r["effective_to"])]  # type: ignore[operator]
    for r in rows:
        if r["effective_from"] == SINCE_ALWAYS:
            r["effective_from"] = None
    emit(rows, fmt, ["kind", "value", "person", "team", "cost_centre", "effective_from", "effective_to"],
         title="Identity map" + ("" if history else f" on {day:%Y-%m-%d}"))


@identities_app.command("unknown")
@handle_errors
def identities_unknown(
    date_from: str = typer.Option(None, "--from", help="First UTC day (default: 90 days ago)."),
    date_to: str = typer.Option(None, "--to", help="Last UTC day, inclusive (default: today)."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """API keys, e-mails and projects in the ledger with no mapping: their spend goes to `unallocated`.

    Example: tallybook identities unknown --from 2026-10-01 --format csv > to-map.csv
    """
    ctx = Context(org)
    start, end = day_range(date_from, date_to, since_opt="--from", until_opt="--to")
    end = end or utcnow().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    start = start or end - timedelta(days=90)
    with ctx.engine.connect() as conn:
        rows = unknown_identities(conn, ctx.org_id, start, end)
    emit(rows, fmt, ["kind", "value", "name", "providers", "last_seen", "spend"],
         title=f"Unmapped keys, e-mails and projects {start:%Y-%m-%d} .. {end - timedelta(days=1):%Y-%m-%d} "
               "(spend: vendor-reported)")


@seats_app.command("set")
@handle_errors
def seats_set(
    platform: str = typer.Option(None, "--platform", help="cursor, claude, chatgpt, ..."),
    plan: str = typer.Option(None, "--plan", help="The plan's name, e.g. business, team, premium."),
    price: str = typer.Option(None, "--price", help="Price per seat per period, e.g. 40 or 32.50."),
    currency: str = typer.Option("USD", "--currency", help="ISO 4217 code."),
    period: str = typer.Option("month", "--period", help="month or year."),
    since: str = typer.Option(None, "--from", help="The price applies from this day (default: always)."),
    file: Path = typer.Option(None, "--file", help="CSV instead: platform,plan,price,currency,period[,effective_from]."),
    org: str = OrgOption,
) -> None:
    """Set what a seat costs on a platform and plan; a new --from date keeps earlier months' price.

    Example: tallybook seats set --platform cursor --plan business --price 40 --currency usd --period month
    """
    if file is not None:
        plans = parse_plans(read_file(file), str(file))
    else:
        if not (platform and plan and price):
            raise ConfigError("Give --platform, --plan and --price (or --file plans.csv).")
        try:
            amount = Decimal(price)
        except ArithmeticError:
            raise ConfigError(f"--price {price!r} is not a number.") from None
        if not amount.is_finite() or amount < 0 or period not in PERIODS or len(currency) != 3:
            raise ConfigError(f"--price must be 0 or more, --period one of {', '.join(PERIODS)}, "
                              "--currency a 3-letter code.")
        plans = [SeatPlan(platform.lower(), plan.lower(), amount, currency.upper(), period,
                          _midnight(since, "--from") or SINCE_ALWAYS)]
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        for p in plans:
            set_plan(conn, ctx.org_id, p)
    for p in plans:
        err.print(f"{p.platform} {p.plan}: {p.price} {p.currency} per seat per {p.period}.")


@seats_app.command("assign")
@handle_errors
def seats_assign(
    emails: list[str] = typer.Argument(None, help="E-mail addresses to give a seat (or --file)."),
    platform: str = typer.Option(None, "--platform"), plan: str = typer.Option(None, "--plan"),
    since: str = typer.Option(None, "--from", help="Held from this day (default: today)."),
    file: Path = typer.Option(None, "--file", help="CSV instead: platform,plan,email[,assigned_from,assigned_to]."),
    org: str = OrgOption,
) -> None:
    """Record who holds a seat (Cursor's members are read from its connector without this).

    Example: tallybook seats assign ana@acme.com bo@acme.com --platform claude --plan team --from 2026-10-01
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        if file is not None:
            seats = parse_assignments(read_file(file), str(file))
            added = sum(put_assignment(conn, ctx.org_id, s) for s in seats)
        else:
            if not (emails and platform and plan):
                raise ConfigError("Give e-mail addresses, --platform and --plan (or --file seats.csv).")
            day = _midnight(since, "--from") or utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
            added = sum(assign(conn, ctx.org_id, platform.lower(), plan.lower(), e, since=day, origin="cli")
                        for e in emails)
    err.print(f"{added} seat(s) assigned.")


@seats_app.command("release")
@handle_errors
def seats_release(
    emails: list[str] = typer.Argument(..., help="E-mail addresses whose seat ends."),
    platform: str = typer.Option(..., "--platform"),
    at: str = typer.Option(None, "--at", help="The day the seat ends (default: today)."),
    org: str = OrgOption,
) -> None:
    """End seats (they stop costing from that day's month on).

    Example: tallybook seats release bo@acme.com --platform cursor
    """
    ctx = Context(org)
    day = _midnight(at, "--at") or utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    with ctx.engine.begin() as conn:
        done = sum(release(conn, ctx.org_id, platform.lower(), e, at=day) for e in emails)
    err.print(f"{done} seat(s) released.")


@seats_app.command("list")
@handle_errors
def seats_list(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """Seats held today: plan, monthly price (estimated), holder's team and last activity; then the plans.

    Example: tallybook seats list --format json
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        rows = seat_list(conn, ctx.org_id, utcnow())
        plans = load_plans(conn, ctx.org_id)
    emit(rows, fmt, ["platform", "plan", "email", "person", "team", "since", "origin", "monthly_cost", "currency",
                     "last_active"], title="Seats held today (monthly cost: estimated from plan prices)")
    if fmt is Format.table:
        emit([{"platform": p.platform, "plan": p.plan, "price": p.price, "currency": p.currency, "period": p.period,
               "effective_from": None if p.effective_from == SINCE_ALWAYS else p.effective_from} for p in plans],
             fmt, ["platform", "plan", "price", "currency", "period", "effective_from"], title="Seat plans")


@seats_app.command("idle")
@handle_errors
def seats_idle(
    days: int = typer.Option(IDLE_DAYS, "--days", min=1, help="No activity in this many days makes a seat idle."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Seats paid for with no activity in the last 30 days, and the monthly saving if released.

    Example: tallybook seats idle --format csv
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        idle = idle_seats(conn, ctx.org_id, utcnow(), days)
    rows = [s.as_dict() for s in idle]
    emit(rows, fmt, ["platform", "plan", "email", "person", "team", "last_active", "monthly_saving", "currency",
                     "origin"], title=f"Idle seats (no activity in {days} days)")
    if fmt is Format.table:
        totals: dict[str, Decimal] = {}
        for s in idle:
            if s.monthly_cost is not None and s.currency:
                totals[s.currency] = totals.get(s.currency, Decimal(0)) + s.monthly_cost
        for currency, amount in sorted(totals.items()):
            err.print(f"Releasing them saves {amount:.2f} {currency} a month (estimated).")
