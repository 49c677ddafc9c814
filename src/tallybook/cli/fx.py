"""`tallybook fx import|show`: the ECB's euro reference rates, for reporting in the organisation's currency."""

from __future__ import annotations

from decimal import Decimal

import typer

from tallybook.cli.common import (
    Context,
    Format,
    FormatOption,
    OrgOption,
    emit,
    err,
    handle_errors,
    parse_day,
    utcnow,
)
from tallybook.cli.pricing import exact
from tallybook.pricing.fx import ECB_URL, MAX_AGE, convert, import_ecb_csv, load_rates, read_ecb

fx_app = typer.Typer(help="Foreign-exchange rates (ECB euro reference rates) for converted reports.",
                     no_args_is_help=True)


@fx_app.command("import")
@handle_errors
def import_rates(
    source: str = typer.Argument(ECB_URL, help="An ECB CSV or zip file, or its URL (the default needs internet)."),
    fmt: Format = FormatOption,
) -> None:
    """Import ECB reference rates (eurofxref-hist.csv or the daily eurofxref.csv); importing again is harmless.

    Example: tallybook fx import eurofxref-hist.csv
    """
    text = read_ecb(source)
    ctx = Context()
    with ctx.engine.begin() as conn:
        result = import_ecb_csv(conn, text, name=source)
    emit([{"source": source, "days": result.days, "rates": result.rates, "first_day": result.first_day,
           "last_day": result.last_day, "currencies": len(result.currencies)}], fmt,
         ("source", "days", "rates", "first_day", "last_day", "currencies"), title="ECB reference rates imported")


@fx_app.command("show")
@handle_errors
def show(
    currency: list[str] = typer.Option(None, "--currency", "-c", help="Currencies to show (repeatable; default: all)."),
    day: str = typer.Option(None, "--date", help="UTC day, YYYY-MM-DD (default: today); weekends use the day before."),
    base: str = typer.Option("USD", "--base", help="Show how many units of each currency one BASE buys."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Rates on a day as ECB cross rates, each with the ECB day it comes from.

    Example: tallybook fx show --currency EUR --date 2026-01-10
    """
    on = parse_day(day, "--date") if day else utcnow().date()
    base = base.upper()
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        rates = load_rates(conn, since=on - MAX_AGE, until=on)
    wanted = [c.upper() for c in currency] if currency else sorted(set(rates.days) | {"EUR"})
    rows = []
    for code in wanted:
        if code == base:
            continue
        converted = convert(Decimal(1), base, code, on=on, rates=rates)
        rows.append({"base": base, "currency": code, "rate": converted.rate.quantize(Decimal("0.000001")),
                     "rate_date": converted.rate_date, "source": converted.source})
    if not rows:
        err.print(f"No rates to show for {on}.")
    emit(exact(rows, fmt), fmt, ("base", "currency", "rate", "rate_date", "source"),
         title=f"1 {base} in other currencies on {on} (ECB reference rates)")
