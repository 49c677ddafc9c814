"""`tallybook alerts ...`: budget, forecast, anomaly, sync and reconciliation alerts to Slack, signed
webhooks and email, each delivered once per rule and period."""

from __future__ import annotations

import time
from enum import Enum

import typer

from tallybook import audit
from tallybook.alerts import rules as alert_rules
from tallybook.alerts.history import deliveries, send_test
from tallybook.alerts.message import DeliveryFailed
from tallybook.alerts.runner import run_once
from tallybook.cli.common import Context, Format, FormatOption, OrgOption, emit, err, handle_errors, out
from tallybook.errors import AlertError
from tallybook.security.vault import Vault

alerts_app = typer.Typer(help="Alerts: rules (budgets, forecasts, anomalies, syncs) and channels (Slack, webhook, email).",
                         no_args_is_help=True)
channels_app = typer.Typer(help="Where alerts go: Slack incoming webhooks, signed webhooks, email.",
                           no_args_is_help=True)
alerts_app.add_typer(channels_app, name="channels")


class Kind(str, Enum):
    budget = "budget"
    forecast = "forecast"
    anomaly = "anomaly"
    sync_failed = "sync_failed"
    sync_stale = "sync_stale"
    key_failing = "key_failing"
    reconcile = "reconcile"
    monthly_report = "monthly_report"


class ChannelKind(str, Enum):
    slack = "slack"
    webhook = "webhook"
    email = "email"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
    app.add_typer(alerts_app, name="alerts")


@channels_app.command("add")
@handle_errors
def channel_add(
    name: str = typer.Argument(..., help="A name rules refer to, e.g. ops-slack."),
    kind: ChannelKind = typer.Option(..., "--kind", help="slack, webhook or email."),
    url: str = typer.Option(None, "--url", help="Slack incoming-webhook URL, or your webhook's URL."),
    to: list[str] = typer.Option(None, "--to", help="Email recipient (repeat for several)."),
    secret: str = typer.Option(None, "--secret", help="Webhook signing secret (default: one is generated and shown once)."),
    org: str = OrgOption,
) -> None:
    """Add a channel. Its URL and secret are stored encrypted and never shown again (only a hint).

    Example: tallybook alerts channels add ops --kind slack --url https://hooks.slack.com/services/T0/B0/XXXX
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        channel, shown = alert_rules.add_channel(conn, Vault.from_settings(ctx.settings), ctx.org_id, name,
                                                 kind.value, url=url, to=to, secret=secret)
        audit.record(conn, ctx.org_id, audit.cli_actor(), "alert_channel.created", "alert_channel", name,
                     {"kind": channel.kind, "target": channel.target_hint})
    err.print(f"Added {channel.kind} channel {channel.name!r} -> {channel.target_hint}")
    if shown:
        err.print("Signing secret (shown once; verify X-Tallybook-Signature with it, see docs/alerts.md):")
        out.print(shown, highlight=False, soft_wrap=True)


@channels_app.command("list")
@handle_errors
def channel_list(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """List channels (kind and a hint of the address, never the URL or secret).

    Example: tallybook alerts channels list
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        found = alert_rules.channels(conn, None, ctx.org_id).values()
    emit([{"name": c.name, "kind": c.kind, "target": c.target_hint} for c in found], fmt,
         ["name", "kind", "target"], title="Alert channels")


@channels_app.command("remove")
@handle_errors
def channel_remove(name: str = typer.Argument(...), org: str = OrgOption) -> None:
    """Remove a channel no rule uses.

    Example: tallybook alerts channels remove ops
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        alert_rules.remove_channel(conn, ctx.org_id, name)
        audit.record(conn, ctx.org_id, audit.cli_actor(), "alert_channel.removed", "alert_channel", name)
    err.print(f"Removed channel {name!r}.")


@alerts_app.command("add")
@handle_errors
def add(
    name: str = typer.Argument(..., help="The rule's name, e.g. support-bot-budget."),
    kind: Kind = typer.Option(..., "--kind", help="budget, forecast, anomaly, sync_failed, sync_stale, key_failing, "
                              "reconcile, monthly_report."),
    channel: list[str] = typer.Option(..., "--channel", help="Channel name (repeat for several)."),
    scope: str = typer.Option("org", "--scope", help="org, key:<virtual key id>, customer:<name> or provider:<name>."),
    amount: str = typer.Option(None, "--amount", help="Budget (budget, forecast), delta percent (reconcile), hours (sync_stale)."),
    currency: str = typer.Option("USD", "--currency", help="Currency of --amount."),
    period: str = typer.Option("month", "--period", help="day or month (UTC), for budgets."),
    thresholds: str = typer.Option("100", "--thresholds", help="Budget levels in percent, e.g. 50,80,100."),
    org: str = OrgOption,
) -> None:
    """Add an alert rule.

    Example: tallybook alerts add bot-budget --kind budget --scope key:vk_01J9 --amount 100 --period month --thresholds 50,80,100 --channel ops
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        rule = alert_rules.add_rule(conn, ctx.org_id, name, kind.value, channel_names=channel, scope=scope,
                                    period=period, amount=amount, currency=currency, thresholds=thresholds)
        kind_of_scope, _, who = rule.scope.partition(":")
        scoped = {"scope": "customer", "customer": who} if kind_of_scope == "customer" else {"scope": rule.scope}
        audit.record(conn, ctx.org_id, audit.cli_actor(), "alert_rule.created", "alert_rule", name, {
            "kind": rule.kind, **scoped, "period": rule.period, "amount": str(rule.amount),
            "currency": rule.currency, "thresholds": list(rule.thresholds), "channels": list(rule.channels)})
    err.print(f"Added {rule.kind} rule {rule.name!r} on {rule.scope} -> {', '.join(rule.channels)}")


@alerts_app.command("list")
@handle_errors
def list_rules(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """List alert rules.

    Example: tallybook alerts list --format json
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        found = alert_rules.rules(conn, ctx.org_id)
    emit([{"name": r.name, "kind": r.kind, "scope": r.scope, "period": r.period, "amount": r.amount,
           "currency": r.currency, "thresholds": ",".join(map(str, r.thresholds)), "channels": ",".join(r.channels),
           "enabled": r.enabled} for r in found], fmt,
         ["name", "kind", "scope", "period", "amount", "currency", "thresholds", "channels", "enabled"],
         title="Alert rules")


@alerts_app.command("remove")
@handle_errors
def remove(name: str = typer.Argument(...), org: str = OrgOption) -> None:
    """Remove an alert rule (its delivery history stays).

    Example: tallybook alerts remove bot-budget
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        alert_rules.remove_rule(conn, ctx.org_id, name)
        audit.record(conn, ctx.org_id, audit.cli_actor(), "alert_rule.removed", "alert_rule", name)
    err.print(f"Removed rule {name!r}.")


@alerts_app.command("test")
@handle_errors
def test(channel: str = typer.Argument(..., help="Channel name."), org: str = OrgOption) -> None:
    """Send a test message to a channel now and say whether it arrived.

    Example: tallybook alerts test ops
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        found = alert_rules.channels(conn, Vault.from_settings(ctx.settings), ctx.org_id).get(channel)
    if found is None:
        raise AlertError(f"No channel named {channel!r}; `tallybook alerts channels list` shows them.")
    try:
        send_test(found, ctx.org_slug, ctx.settings)
    except DeliveryFailed as e:
        raise AlertError(f"Channel {channel!r} did not take the test message: {e}") from None
    err.print(f"Sent a test message to {channel!r} ({found.target_hint}).")


@alerts_app.command("history")
@handle_errors
def history(
    rule: str = typer.Option(None, "--rule", help="Only this rule's deliveries."),
    status: str = typer.Option(None, "--status", help="pending, sent or failed."),
    limit: int = typer.Option(50, "--limit", min=1),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Deliveries, newest first: when, which rule and channel, status, attempts, last error.

    Example: tallybook alerts history --status failed
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        rows = deliveries(conn, ctx.org_id, rule=rule, status=status, limit=limit)
    emit(rows, fmt, ["id", "created_at", "rule", "channel", "subject", "status", "attempts", "sent_at", "last_error"],
         title="Alert deliveries")


@alerts_app.command("run")
@handle_errors
def run(
    watch: bool = typer.Option(False, "--watch", help="Keep checking every TALLYBOOK_ALERTS_INTERVAL seconds."),
    org: str = OrgOption,
) -> None:
    """Check every rule now, record what fired and send what is due (the gateway and `serve` do this on their own).

    Example: tallybook alerts run --watch
    """
    ctx = Context(org)
    vault = Vault.from_settings(ctx.settings)
    while True:
        result = run_once(ctx.engine, ctx.settings, vault, org_id=ctx.org_id)
        sent = sum(o.status == "sent" for o in result.outcomes)
        failed = [o for o in result.outcomes if o.status != "sent"]
        err.print(f"{result.fired} firing(s), {result.new} new; sent {sent}"
                  + "".join(f"\n  {o.rule} -> {o.channel}: {o.status} ({o.error})" for o in failed))
        if not watch:
            return
        time.sleep(ctx.settings.alerts_interval)
