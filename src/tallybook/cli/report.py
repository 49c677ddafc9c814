"""`tallybook report usage|costs`: totals for a window, grouped as asked, as table, JSON or CSV."""

from __future__ import annotations

from datetime import datetime, timedelta

import typer

from tallybook.analytics.currency import converted_cost_report
from tallybook.analytics.rollups import (
    COST_GROUPS,
    USAGE_GROUPS,
    ReportError,
    ReportQuery,
    cost_report,
    usage_report,
)
from tallybook.cli.common import (
    Context,
    Format,
    FormatOption,
    OrgOption,
    day_range,
    emit,
    handle_errors,
    parse_month,
    utcnow,
)
from tallybook.errors import ConfigError
from tallybook.pricing.fx import org_currency

report_app = typer.Typer(help="Usage and cost reports from the ledger.", no_args_is_help=True)

USAGE_COLUMNS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "requests",
                 "quantities")


def window(date_from: str | None, date_to: str | None, month: str | None) -> tuple[datetime, datetime]:
    if month:
        if date_from or date_to:
            raise typer.BadParameter("Give --month or --from/--to, not both.")
        return parse_month(month)
    start, end = day_range(date_from, date_to, since_opt="--from", until_opt="--to")
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    end = end or today + timedelta(days=1)
    return start or end - timedelta(days=30), end


def build_query(ctx: Context, date_from: str | None, date_to: str | None, month: str | None, group_by: str,
                filters: dict[str, list[str] | None]) -> ReportQuery:
    start, end = window(date_from, date_to, month)
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    return ReportQuery(org_id=ctx.org_id, start=start, end=end, group_by=groups,
                       filters={k: v for k, v in filters.items() if v})


FromOption = typer.Option(None, "--from", help="First UTC day, YYYY-MM-DD (default: 30 days ago).")
ToOption = typer.Option(None, "--to", help="Last UTC day, inclusive (default: today).")
MonthOption = typer.Option(None, "--month", help="A calendar month, YYYY-MM (instead of --from/--to).")
ProviderFilter = typer.Option(None, "--provider", help="Only these providers (repeatable).")
ModelFilter = typer.Option(None, "--model", help="Only these models, as the provider names them (repeatable).")
ProjectFilter = typer.Option(None, "--project", help="Only these project/workspace ids (repeatable).")
SourceFilter = typer.Option(None, "--source", help="Only these sources (repeatable): openai_admin, "
                            "anthropic_admin, claude_code, cursor, gateway, csv:<name>, ...")


def origin_note(sources: list[str] | None) -> str:
    """What the figures are: the gateway meters (or estimates) usage, every other source reports it."""
    if sources and set(sources) == {"gateway"}:
        return "metered by the gateway"
    if sources and "gateway" in sources:
        return "reported, and metered by the gateway"
    return "reported" if sources else "all sources"


@report_app.command("usage")
@handle_errors
def usage(
    date_from: str = FromOption, date_to: str = ToOption, month: str = MonthOption,
    group_by: str = typer.Option("provider,model", "--group-by", "-g",
                                 help=f"Comma-separated, from: {', '.join(USAGE_GROUPS)}."),
    provider: list[str] = ProviderFilter, model: list[str] = ModelFilter, project: list[str] = ProjectFilter,
    source: list[str] = SourceFilter, fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Token and unit usage for a window (vendor-reported, and metered by the gateway), grouped as asked.

    `input_tokens` is uncached input; cache reads and writes are separate measures. The gateway's
    usage (`--source gateway`) can be grouped by virtual_key, customer, feature and business_unit.

    Example: tallybook report usage --source gateway --group-by customer,feature,model --format json
    """
    ctx = Context(org)
    query = build_query(ctx, date_from, date_to, month, group_by,
                        {"provider": provider, "model": model, "project": project, "source": source})
    try:
        with ctx.engine.connect() as conn:
            rows = usage_report(conn, query)
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    names = [f"{g}_name" for g in query.group_by if f"{g}_name" in (rows[0] if rows else {})]
    emit(rows, fmt, [*query.group_by, *names, *USAGE_COLUMNS],
         title=f"Usage {query.start:%Y-%m-%d} .. {query.end - timedelta(days=1):%Y-%m-%d} ({origin_note(source)})")


@report_app.command("costs")
@handle_errors
def costs(
    date_from: str = FromOption, date_to: str = ToOption, month: str = MonthOption,
    group_by: str = typer.Option("provider,model", "--group-by", "-g",
                                 help=f"Comma-separated, from: {', '.join(COST_GROUPS)}."),
    provider: list[str] = ProviderFilter, model: list[str] = ModelFilter, project: list[str] = ProjectFilter,
    source: list[str] = SourceFilter,
    currency: str = typer.Option(None, "--currency", help="Report in this currency (default: the "
                                 "organisation's), converting each day at the ECB rate; see `tallybook fx import`."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Vendor-reported costs for a window, grouped as asked; `amount` in the currency's main unit.

    Amounts in another currency than the organisation's (or --currency) are converted day by day
    at the ECB reference rate, with the original amount, the rate and its date beside them.

    Example: tallybook report costs --from 2026-10-01 --to 2026-10-31 --group-by provider,project --currency EUR
    """
    ctx = Context(org)
    query = build_query(ctx, date_from, date_to, month, group_by,
                        {"provider": provider, "model": model, "project": project, "source": source})
    fx_columns: list[str] = []
    try:
        with ctx.engine.connect() as conn:
            rows = cost_report(conn, query)
            target = (currency or org_currency(conn, ctx.org_id)).upper()
            if any(r["currency"] != target for r in rows):
                rows = converted_cost_report(conn, query, target)
                fx_columns = ["original_amount", "original_currency", "fx_rate", "fx_rate_date"]
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    names = [f"{g}_name" for g in query.group_by if f"{g}_name" in (rows[0] if rows else {})]
    emit(rows, fmt, [*query.group_by, *names, "amount", "currency", *fx_columns, "origin"],
         title=f"Costs {query.start:%Y-%m-%d} .. {query.end - timedelta(days=1):%Y-%m-%d} (vendor-reported)")
