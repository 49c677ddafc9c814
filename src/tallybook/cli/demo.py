"""`tallybook demo` and `tallybook fakes serve`: the product end to end against the faithful fakes."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import typer

from tallybook.analytics.devtools import devtools
from tallybook.analytics.finance import finance_report, parse_period
from tallybook.analytics.optimize import savings
from tallybook.analytics.pricers import list_pricer, unit_prices
from tallybook.analytics.rates import rates
from tallybook.analytics.rollups import ReportQuery, cost_report, usage_report
from tallybook.cli.common import Context, OrgOption, err, handle_errors, out, safe_url, utcnow
from tallybook.cli.connect import save_key
from tallybook.cli.demo_finance import load_demo_finance
from tallybook.cli.serve import check_port_free, dashboard_url, ensure_demo_user, serve_dashboard
from tallybook.cli.sync import run_sync
from tallybook.connectors.sync import midnight
from tallybook.errors import ConfigError
from tallybook.fakes.launcher import DEMO_KEYS, start_fakes
from tallybook.money import fmt_amount

fakes_app = typer.Typer(help="Run the fake provider admin APIs (for trying tallybook offline).",
                        no_args_is_help=True)

DEFAULT_PORTS = {"openai": 8901, "anthropic": 8902, "cursor": 8903}
CODING_TOOLS = {"claude_code": "anthropic", "cursor": "cursor"}  # connection -> the fake serving it


def _start(ports: dict[str, int]):
    try:
        return start_fakes(ports=ports)
    except OSError as exc:
        raise ConfigError(f"Cannot start the fake providers on ports {ports} ({exc.strerror}); "
                          "choose others with --openai-port / --anthropic-port / --cursor-port.") from None


@handle_errors
def demo(
    days: int = typer.Option(90, "--days", min=1, max=120, help="Days of history to sync."),
    openai_port: int = typer.Option(DEFAULT_PORTS["openai"], "--openai-port"),
    anthropic_port: int = typer.Option(DEFAULT_PORTS["anthropic"], "--anthropic-port"),
    cursor_port: int = typer.Option(DEFAULT_PORTS["cursor"], "--cursor-port"),
    web_port: int = typer.Option(None, "--web-port", min=1, max=65535,
                                 help="Dashboard port (default TALLYBOOK_WEB_PORT, 8000)."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Stop after the summary instead of serving the dashboard."),
    org: str = OrgOption,
) -> None:
    """Start the fake OpenAI, Anthropic (with Claude Code) and Cursor admin APIs, connect, sync, summarise,
    then serve the dashboard with the demo organisation (printing its URL and the demo login) until Ctrl-C.

    The data flows through the real connectors, sync engine and ledger. The connections are
    named openai-demo, anthropic-demo, claude_code-demo and cursor-demo; `tallybook fakes serve`
    brings the fakes back later.

    Example: tallybook demo --days 90          (--no-serve: end after the summary, for scripts)
    """
    ctx = Context(org)
    web_port = web_port or ctx.settings.web_port
    if not no_serve:  # fail before the sync, not after it
        check_port_free(ctx.settings.web_host, web_port)
    started = time.monotonic()
    with _start({"openai": openai_port, "anthropic": anthropic_port, "cursor": cursor_port}) as cloud:
        for provider in ("openai", "anthropic"):
            save_key(ctx, provider, DEMO_KEYS[provider], base_url=cloud.base_url(provider), name=f"{provider}-demo")
        for tool, fake in CODING_TOOLS.items():  # Claude Code shares the Anthropic admin key and host
            save_key(ctx, tool, DEMO_KEYS[fake], base_url=cloud.base_url(fake), name=f"{tool}-demo")
        since = midnight(utcnow()) - timedelta(days=days - 1)
        for provider in ("openai", "anthropic", *CODING_TOOLS):
            run_sync(ctx, connection=f"{provider}-demo", since=since)
        with ctx.engine.begin() as conn:  # identity map, seat plans, seats, invoices: the finance report's inputs
            load_demo_finance(conn, ctx.org_id, utcnow())
    elapsed = time.monotonic() - started
    with ctx.engine.connect() as conn:
        query = ReportQuery(org_id=ctx.org_id, start=since, end=midnight(utcnow()) + timedelta(days=1),
                            group_by=["provider"])
        costs = {r["provider"]: r for r in cost_report(conn, query)}
        usage = {r["provider"]: r for r in usage_report(conn, query)}
        month = ReportQuery(org_id=ctx.org_id, start=midnight(utcnow()) - timedelta(days=30),
                            end=midnight(utcnow()) + timedelta(days=1), group_by=["provider"])
        effective = {r.group["provider"]: r for r in rates(conn, month, list_pricer=list_pricer)}
        saving = sum((o.monthly_saving for o in savings(conn, month, unit_prices)), Decimal(0))
    out.print(f"\n[bold]tallybook demo[/]: {days} days synced in {elapsed:.1f} s into {safe_url(ctx.settings.database_url)}\n")
    for provider, row in sorted(usage.items()):
        cost = costs.get(provider)
        if not cost and not row["total_tokens"]:  # Claude Code: activity only here, its line is below
            continue
        money = f"{fmt_amount(cost['amount'], 2)} {cost['currency']}" if cost else "no costs"
        out.print(f"  {provider:<10} {money:>16} (vendor-reported)   input {row['input_tokens']:,}  "
                  f"cached {row['cache_read_tokens']:,}  output {row['output_tokens']:,} tokens")
    for provider, rate in sorted(effective.items()):
        blended = "-" if rate.blended_rate is None else f"{rate.blended_rate:.2f}"
        vs_list = "" if rate.discount is None else (
            f", {abs(rate.discount) * 100:.1f} % {'below' if rate.discount >= 0 else 'above'} list price")
        out.print(f"  {provider:<10} last 30 days: blended {blended} USD per 1M tokens (3:1, reported){vs_list}")
    out.print(f"  potential saving: {fmt_amount(saving, 2)} USD per month (estimated; `tallybook report savings`)")
    with ctx.engine.connect() as conn:
        coding = devtools(conn, ctx.org_id, month.start, midnight(utcnow()))
    for line in (r.as_dict() for r in coding):
        acceptance = "-" if line["acceptance_rate"] is None else f"{line['acceptance_rate'] * 100:.0f} %"
        out.print(f"  {line['tool']:<11} last 30 days: {line['active_users']} active users, "
                  f"{line['lines_accepted'] or 0:,} lines accepted, acceptance {acceptance}, "
                  f"{fmt_amount(line['cost'], 2)} {line['currency']} ({line['cost_origin']}; `tallybook report devtools`)")
    with ctx.engine.connect() as conn:
        last_month = parse_period(f"{midnight(utcnow()).replace(day=1) - timedelta(days=1):%Y-%m}")
        finance = finance_report(conn, ctx.org_id, last_month)
    out.print(f"  finance {last_month.label}: {fmt_amount(finance.total, 2)} {finance.currency} (seats "
              f"{fmt_amount(finance.seat_total, 2)} estimated, usage {fmt_amount(finance.usage_total, 2)} reported), "
              f"{finance.unallocated['share_pct']} % unallocated, {len(finance.idle_seats)} idle seats: "
              f"tallybook report finance --month {last_month.label}")
    out.print("\nTry: tallybook report costs --group-by provider,model\n"
              "     tallybook report rates --group-by provider,model\n"
              "     tallybook report benchmark    tallybook report anomalies    tallybook report forecast\n"
              "     tallybook report usage --group-by day --provider openai --format csv\n"
              "     tallybook fakes serve   (keeps the fake APIs up so `tallybook sync` works)")
    email, password = ensure_demo_user(ctx.settings, ctx.org_slug)
    login = (f"\nDashboard: {dashboard_url(ctx.settings, ctx.settings.web_host, web_port)}  sign in as {email} "
             f"with password {password} (the demo's own login, admin of {ctx.org_slug})")
    if no_serve:
        out.print(login + "\n           once `tallybook serve` runs")
        return
    ctx.close()
    with _start({"openai": openai_port, "anthropic": anthropic_port, "cursor": cursor_port}):
        serve_dashboard(ctx.settings, ctx.settings.web_host, web_port, banner=login)  # the fakes stay up for "sync"


@fakes_app.command("serve")
@handle_errors
def serve(
    openai_port: int = typer.Option(DEFAULT_PORTS["openai"], "--openai-port"),
    anthropic_port: int = typer.Option(DEFAULT_PORTS["anthropic"], "--anthropic-port"),
    cursor_port: int = typer.Option(DEFAULT_PORTS["cursor"], "--cursor-port"),
) -> None:
    """Serve the fake OpenAI, Anthropic (with Claude Code analytics) and Cursor admin APIs until interrupted.

    Example: tallybook fakes serve --openai-port 8901 --anthropic-port 8902 --cursor-port 8903
    """
    with _start({"openai": openai_port, "anthropic": anthropic_port, "cursor": cursor_port}) as cloud:
        for provider in ("openai", "anthropic", "cursor"):
            err.print(f"{provider}: {cloud.base_url(provider)}  key {DEMO_KEYS[provider]}  (a fake's demo key)")
        err.print("Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
