"""`tallybook pricing show|set|apply` and `tallybook pricing rules list`: list prices and the organisation's rules."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from tallybook import audit
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
from tallybook.errors import PricingError
from tallybook.pricing.catalog import TOKEN_PRICE_KEYS, UNIT_PER, ModelPrice, default_catalog, list_price
from tallybook.pricing.price import per_label
from tallybook.pricing.rulefile import build_rule, parse_pairs, read_rules
from tallybook.pricing.rules import Change, Rule, dec, load_rules, rules_at, save_audited

pricing_app = typer.Typer(help="List prices (genai-prices, with history) and the organisation's pricing rules.",
                          no_args_is_help=True)
rules_app = typer.Typer(help="The organisation's pricing rules.", no_args_is_help=True)
pricing_app.add_typer(rules_app, name="rules")

PRICE_COLUMNS = ("unit", "price", "per", "batch", "source", "tiers")
RULE_COLUMNS = ("rule_id", "version", "kind", "provider", "model_pattern", "figures", "effective_from",
                "effective_to", "source")
CHANGE_COLUMNS = ("rule_id", "action", "version", "effective_from", "note")


def exact(rows: list[dict[str, Any]], fmt: Format) -> list[dict[str, Any]]:
    """Prices printed in full in a table (the table's Decimal cells are rounded to cents)."""
    if fmt is not Format.table:
        return rows
    return [{k: dec(v) if isinstance(v, Decimal) else v for k, v in row.items()} for row in rows]


def _day(value: str | None, option: str) -> datetime:
    if value is None:
        return utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return datetime.combine(parse_day(value, option), datetime.min.time())


def _price_rows(price: ModelPrice) -> list[dict[str, Any]]:
    rows = []
    for key in TOKEN_PRICE_KEYS:
        rate = price.rate(key)
        if rate is None:
            continue
        tiers = price.tiers.get(key) or price.tiers.get("cache_write_mtok" if key == "cache_write_5m_mtok" else "")
        derived = price.derived.get(key)
        rows.append({
            "unit": key, "price": rate, "per": "MTok", "batch": price.batch.get(key),
            "source": f"derived: {derived.note}" if derived else "catalog",
            "tiers": "; ".join(f"above {start:,} input tokens: {tier}" for start, tier in (tiers or ())[1:]) or None,
        })
    for key, rate in sorted(price.units.items()):
        rows.append({"unit": key, "price": rate, "per": per_label(key, UNIT_PER.get(key, 1)), "batch": None,
                     "source": "catalog", "tiers": None})
    return rows


def _rule_row(rule: Rule) -> dict[str, Any]:
    return {"rule_id": rule.rule_id, "version": rule.version, "kind": rule.kind, "provider": rule.provider or "*",
            "model_pattern": rule.model_pattern, "figures": rule.describe(), "currency": rule.currency,
            "effective_from": rule.effective_from, "effective_to": rule.effective_to, "source": rule.source,
            "note": rule.note or None, "created_at": rule.created_at, "retired_at": rule.retired_at}


@pricing_app.command("show")
@handle_errors
def show(
    model: str = typer.Argument(..., help="The model as the provider reports it, e.g. gpt-4o-2024-08-06."),
    provider: str = typer.Option(None, "--provider", help="openai, anthropic, ... (default: guessed from MODEL)."),
    at: str = typer.Option(None, "--at", help="The UTC day whose prices to show, YYYY-MM-DD (default: today)."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """List prices of MODEL per unit on a day, and the organisation's rules in force that affect it.

    Token prices are USD per 1M tokens; `derived` prices are not in the catalog and follow the
    provider's published rules (docs/pricing.md); `batch` is the price for batch usage.

    Example: tallybook pricing show claude-sonnet-4-20250514 --at 2026-03-01
    """
    day = _day(at, "--at")
    catalog = default_catalog()
    provider = (provider or catalog.provider_for(model) or "").lower()
    if not provider:
        raise PricingError(f"Cannot tell which provider {model!r} belongs to; give --provider openai (or another).")
    price = list_price(provider, model, at=day, catalog=catalog)
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        rules = rules_at(load_rules(conn, ctx.org_id), provider=provider, model=model, at=day)
    if price is None and not rules:
        raise PricingError(f"{provider}/{model} is not in {catalog.version}: its usage is priced as unknown. "
                           "Check the name (as the provider reports it), or price it with a negotiated rule: "
                           f"tallybook pricing set --id my-rate --provider {provider} --model '{model}' "
                           "--rate input_mtok=... --rate output_mtok=... --from YYYY-MM-DD")
    rows = _price_rows(price) if price else []
    rule_rows = [_rule_row(r) for r in rules]
    if fmt is Format.json:
        emit([{"provider": provider, "model": model, "at": day, "known": price is not None, "currency": "USD",
               "catalog_model": price.catalog_model if price else None,
               "price_version": price.price_version if price else None,
               "effective_from": price.effective_from if price else None,
               "prices": rows, "rules": rule_rows, "notes": list(price.notes) if price else []}], fmt, ())
        return
    if price is None:
        err.print(f"{provider}/{model} is not in {catalog.version}: only the rules below can price it.")
    else:
        since = f", since {price.effective_from}" if price.effective_from else ""
        emit(exact(rows, fmt), fmt, PRICE_COLUMNS, title=f"{provider}/{model} list prices on {day:%Y-%m-%d}, USD "
                                             f"({price.price_version}{since})")
    if fmt is Format.table:
        if rule_rows:
            emit(rule_rows, fmt, RULE_COLUMNS, title=f"Rules in force on {day:%Y-%m-%d}")
        else:
            err.print("No organisation rules affect this model on that day.")


@pricing_app.command("set")
@handle_errors
def set_rule(
    rule_id: str = typer.Option(..., "--id", help="The rule's name; setting an existing id makes a new version."),
    provider: str = typer.Option(None, "--provider", help="openai, anthropic, ... (default: every provider)."),
    model: str = typer.Option("*", "--model", help="Model pattern, fnmatch style: 'gpt-4o*'."),
    markup: str = typer.Option(None, "--markup", help="Customer markup: 0.20 or 20%."),
    discount: str = typer.Option(None, "--discount", help="Discount off list: 0.10 or 10%."),
    rate: list[str] = typer.Option(None, "--rate", help="Negotiated price, UNIT=PRICE per 1M tokens: "
                                                        "input_mtok=2.4 (repeatable)."),
    tier: list[str] = typer.Option(None, "--tier", help="Commitment tier, MIN_SPEND:DISCOUNT per month: "
                                                        "10000:0.05 (repeatable)."),
    currency: str = typer.Option("USD", "--currency", help="Currency of rates and spend thresholds."),
    date_from: str = typer.Option(..., "--from", help="First UTC day the rule applies, YYYY-MM-DD."),
    date_to: str = typer.Option(None, "--to", help="First UTC day it no longer applies (optional)."),
    note: str = typer.Option(None, "--note", help="Free text kept with the rule."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Create a rule, or a new version of one, from options (one of --markup, --discount, --rate, --tier).

    A changed rule never reprices the past: if --from is not after the current version's start,
    the new version takes effect now.

    Example: tallybook pricing set --id gpt4o-markup --provider openai --model 'gpt-4o*' --markup 0.20 --from 2026-01-01
    """
    values: dict[str, Any] = {"provider": provider, "model": model, "markup": markup, "discount": discount,
                              "currency": currency, "effective_from": date_from, "effective_to": date_to,
                              "note": note}
    if rate:
        values["rates"] = dict(_pairs(rate, "=", "--rate", "input_mtok=2.4"))
    if tier:
        values["tiers"] = [{"min_spend": spend, "discount": off} for spend, off in _pairs(tier, ":", "--tier", "10000:0.05")]
    rule = build_rule(rule_id, values)
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        changes = save_audited(conn, ctx.org_id, [rule], source="cli", actor=audit.cli_actor())
    _report(changes, fmt, "tallybook pricing set")


def _pairs(items: list[str], sep: str, option: str, example: str) -> list[tuple[str, str]]:
    try:
        return [pair for item in items for pair in parse_pairs(item, sep, example)]
    except PricingError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


@pricing_app.command("apply")
@handle_errors
def apply(
    file: Path = typer.Argument(..., help="rules.toml, or a .tally file of rule blocks."),
    check: bool = typer.Option(False, "--check", help="Read the file and show what would change; write nothing."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Make the organisation's rules match a file kept in version control.

    Applying the same file again changes nothing; a changed rule becomes a new version and the old
    version keeps pricing the past. Rules missing from the file are left as they are.

    Example: tallybook pricing apply pricing/rules.toml --check
    """
    rules = read_rules(file)
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        transaction = conn.begin()
        try:
            changes = save_audited(conn, ctx.org_id, rules, source=str(file), actor=audit.cli_actor())
        except BaseException:
            transaction.rollback()
            raise
        if check:
            transaction.rollback()
        else:
            transaction.commit()
    _report(changes, fmt, f"{file}{' (check only: nothing written)' if check else ''}")


def _report(changes: list[Change], fmt: Format, what: str) -> None:
    rows = [{"rule_id": c.rule_id, "action": c.action, "version": c.version, "effective_from": c.effective_from,
             "note": c.note or None} for c in changes]
    counts = {a: sum(c.action == a for c in changes) for a in ("created", "updated", "unchanged")}
    emit(rows, fmt, CHANGE_COLUMNS, title=f"{what}: " + ", ".join(f"{n} {a}" for a, n in counts.items()))


@rules_app.command("list")
@handle_errors
def list_rules(
    all_versions: bool = typer.Option(False, "--all-versions", help="Every version, not just each rule's newest."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """The organisation's pricing rules: each rule's newest version, or its whole history.

    Example: tallybook pricing rules list --all-versions --format json
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        rules = load_rules(conn, ctx.org_id, current_only=not all_versions)
    columns = RULE_COLUMNS + (("created_at", "retired_at") if all_versions else ())
    emit([_rule_row(r) for r in rules], fmt, columns,
         title="Pricing rules, every version" if all_versions else "Pricing rules")
