"""`tallybook report rates|benchmark|savings|commitments|reconcile` and `tallybook benchmark join|leave|share`.

Thin: each command builds a ReportQuery, calls one analytics function with the catalog's pricers,
and prints what it returns.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

import typer

from tallybook import audit
from tallybook.analytics import benchmark as bm
from tallybook.analytics.optimize import advise_commitment, parse_schedule, savings
from tallybook.analytics.pricers import NegotiatedPricer, blended_list_price, list_pricer, unit_prices
from tallybook.analytics.rates import RATE_GROUPS, rates
from tallybook.analytics.reconcile import DEFAULT_THRESHOLD, reconcile
from tallybook.analytics.rollups import ReportError, ReportQuery, cost_report
from tallybook.cli.common import (
    Context,
    Format,
    FormatOption,
    OrgOption,
    emit,
    err,
    handle_errors,
    parse_month,
    utcnow,
)
from tallybook.cli.report import FromOption, MonthOption, ToOption, build_query, report_app
from tallybook.errors import ConfigError
from tallybook.pricing.rules import load_rules

benchmark_app = typer.Typer(help="Opt in to (or out of) the anonymous peer benchmark.", no_args_is_help=True)

RATE_COLUMNS = ("currency", "input_tokens", "output_tokens", "input_rate_mtok", "output_rate_mtok",
                "blended_rate_mtok", "list_cost", "discount", "unpriced_models")


def _decimal(value: str, option: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter(f"{value!r} is not a number.", param_hint=option) from None


def _last_full_month() -> str:
    first = utcnow().replace(day=1)
    return f"{first - timedelta(days=1):%Y-%m}"


@report_app.command("rates")
@handle_errors
def report_rates(
    date_from: str = FromOption, date_to: str = ToOption, month: str = MonthOption,
    group_by: str = typer.Option("provider,model", "--group-by", "-g",
                                 help=f"Comma-separated, from: {', '.join(g for g in RATE_GROUPS if g != 'hour')}."),
    provider: list[str] = typer.Option(None, "--provider"), fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Effective input, output and blended (3:1) $ per 1M tokens from reported cost, and the discount vs list.

    Example: tallybook report rates --month 2026-10 --group-by provider --format json
    """
    ctx = Context(org)
    query = build_query(ctx, date_from, date_to, month, group_by, {"provider": provider})
    try:
        with ctx.engine.connect() as conn:
            rows = [r.as_dict() for r in rates(conn, query, list_pricer=list_pricer)]
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    emit(rows, fmt, [*query.group_by, *RATE_COLUMNS], title="Effective rates (USD per 1M tokens, reported cost)")


@report_app.command("benchmark")
@handle_errors
def report_benchmark(
    month: str = typer.Option(None, "--month", help="YYYY-MM (default: the last full month)."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Your blended rate per tier vs the tallybook market index, and among opted-in peers.

    Example: tallybook report benchmark --month 2026-10
    """
    ctx = Context(org)
    month = month or _last_full_month()
    parse_month(month)  # a clear error for a malformed month
    with ctx.engine.connect() as conn:
        rows = bm.benchmark_report(conn, ctx.org_id, month, blended_list_price)
    emit(rows, fmt, ["tier", "index_blended_mtok", "org_blended_rate_mtok", "vs_index_pct", "peers",
                     "peer_contributors", "p10", "p50", "p90", "org_percentile"],
         title=f"Benchmark {month} (USD per 1M tokens, blended 3:1)")


@report_app.command("savings")
@handle_errors
def report_savings(
    date_from: str = FromOption, date_to: str = ToOption, month: str = MonthOption,
    cache_target: str = typer.Option("0.5", "--cache-target", help="Cache hit rate to reach (share of input)."),
    batch_share: str = typer.Option("0.2", "--batch-share", help="Share of non-batch traffic that could wait."),
    substitute_share: str = typer.Option("0.3", "--substitute-share", help="Share moved to a cheaper model."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Savings in dollars per month from caching, batching and model mix, each with its assumption.

    Example: tallybook report savings --from 2026-10-01 --to 2026-10-31 --cache-target 0.6
    """
    ctx = Context(org)
    query = build_query(ctx, date_from, date_to, month, "", {})
    with ctx.engine.connect() as conn:
        found = savings(conn, query, unit_prices, cache_target=_decimal(cache_target, "--cache-target"),
                        batch_share=_decimal(batch_share, "--batch-share"),
                        substitute_share=_decimal(substitute_share, "--substitute-share"))
    rows = [o.as_dict() for o in sorted(found, key=lambda o: -o.monthly_saving)]
    total = sum((o.monthly_saving for o in found), Decimal(0)).quantize(Decimal("0.01"))
    if fmt is Format.table:
        emit(rows, fmt, ["kind", "provider", "model", "current", "monthly_saving", "assumption"],
             title="Savings (USD per 30 days, estimated at list price)")
        err.print(f"Total potential saving: {total} USD per month (estimated; options overlap, so not additive "
                  "across kinds for the same model).")
    else:
        emit(rows, fmt, ["kind", "provider", "model", "current", "monthly_saving", "window_saving", "currency",
                         "origin", "assumption"])


@report_app.command("commitments")
@handle_errors
def report_commitments(
    months: int = typer.Option(3, "--months", min=1, max=24, help="Full months of history to use."),
    schedule: str = typer.Option("5000:0.05,20000:0.10,50000:0.15", "--schedule",
                                 help="Monthly commit:discount tiers, e.g. 5000:0.05,20000:0.10."),
    provider: str = typer.Option(None, "--provider", help="Only this provider's spend."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """The committed monthly spend that would have minimised the last months' cost, and its break-even.

    Example: tallybook report commitments --months 3 --schedule 1000:0.05,5000:0.12 --provider openai
    """
    ctx = Context(org)
    try:
        tiers = parse_schedule(schedule)
    except (InvalidOperation, ValueError):
        raise typer.BadParameter("use commit:discount pairs, e.g. 5000:0.05,20000:0.10", param_hint="--schedule") from None
    end = utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = end
    for _ in range(months):
        start = (start - timedelta(days=1)).replace(day=1)
    query = ReportQuery(org_id=ctx.org_id, start=start, end=end, group_by=["month"],
                        filters={"provider": [provider]} if provider else {})
    with ctx.engine.connect() as conn:
        spend = {r["month"]: r["amount"] for r in cost_report(conn, query) if r["currency"] == "USD"}
    monthly = [spend.get(f"{m:%Y-%m}", Decimal(0)) for m in _months(start, end)]
    advice = advise_commitment(monthly, tiers)
    row = {**advice.as_dict(), "monthly_spend": [str(m) for m in monthly], "schedule": schedule}
    emit([row], fmt, ["commit_per_month", "discount", "cost_with_commitment", "on_demand_cost", "saving",
                      "break_even_utilisation", "months", "currency"],
         title=f"Commitment advice over {start:%Y-%m}..{end - timedelta(days=1):%Y-%m} (reported spend)")


def _months(start: datetime, end: datetime) -> list[datetime]:
    found, cursor = [], start
    while cursor < end:
        found.append(cursor)
        cursor = (cursor.replace(day=28) + timedelta(days=4)).replace(day=1)
    return found


@report_app.command("reconcile")
@handle_errors
def report_reconcile(
    date_from: str = FromOption, date_to: str = ToOption, month: str = MonthOption,
    threshold: str = typer.Option(str(DEFAULT_THRESHOLD), "--threshold", help="Flag deltas above this share."),
    flagged_only: bool = typer.Option(False, "--flagged-only", help="Only rows over the threshold."),
    provider: list[str] = typer.Option(None, "--provider"), fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Per day and model: estimated vs vendor-reported cost, and metered vs reported tokens.

    The estimate is list price, or the organisation's negotiated rate or discount where a pricing rule applies.

    Example: tallybook report reconcile --month 2026-10 --threshold 0.02 --flagged-only
    """
    ctx = Context(org)
    limit = _decimal(threshold, "--threshold")
    query = build_query(ctx, date_from, date_to, month, "", {"provider": provider})
    with ctx.engine.connect() as conn:
        pricer = NegotiatedPricer(load_rules(conn, ctx.org_id))  # list price unless a rule overrides it
        rows = [r.as_dict(limit) for r in reconcile(conn, query, pricer)]
    if flagged_only:
        rows = [r for r in rows if r["flagged"]]
    emit(rows, fmt, ["day", "provider", "model", "reported_cost", "estimated_cost", "cost_delta", "cost_delta_pct",
                     "reported_tokens", "metered_tokens", "token_delta_pct", "flagged", "reason"],
         title="Reconciliation (USD)")


@benchmark_app.command("join")
@handle_errors
def join(org: str = OrgOption) -> None:
    """Opt in: share one blended rate per tier and month, anonymously, with this deployment's peers.

    Example: tallybook benchmark join
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        bm.set_opt_in(conn, ctx.org_id, True)
        audit.record(conn, ctx.org_id, audit.cli_actor(), "benchmark.joined", "organisation", str(ctx.org_id))
    err.print("Opted in. Share a month with `tallybook benchmark share --month YYYY-MM`.")


@benchmark_app.command("leave")
@handle_errors
def leave(org: str = OrgOption) -> None:
    """Opt out and withdraw every figure shared so far.

    Example: tallybook benchmark leave
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        bm.set_opt_in(conn, ctx.org_id, False)
        audit.record(conn, ctx.org_id, audit.cli_actor(), "benchmark.left", "organisation", str(ctx.org_id))
    err.print("Opted out; shared figures withdrawn.")


@benchmark_app.command("share")
@handle_errors
def share(month: str = typer.Option(None, "--month", help="YYYY-MM (default: the last full month)."),
          org: str = OrgOption) -> None:
    """Share this organisation's blended rate per tier for a month (only when opted in).

    Example: tallybook benchmark share --month 2026-10
    """
    ctx = Context(org)
    month = month or _last_full_month()
    start, end = parse_month(month)
    with ctx.engine.begin() as conn:
        if not bm.is_opted_in(conn, ctx.org_id):
            raise ConfigError("This organisation has not opted in: run `tallybook benchmark join` first.")
        mine = bm.tier_rates(conn, ctx.org_id, start, end, bm.load_tiers())
        shared = bm.share_month(conn, ctx.org_id, month,
                                {t: r.blended_rate for t, r in mine.items() if r.blended_rate is not None})
        audit.record(conn, ctx.org_id, audit.cli_actor(), "benchmark.shared", "organisation", str(ctx.org_id),
                     {"month": month, "tiers": shared})
    err.print(f"Shared {shared} tier rate(s) for {month}.")
