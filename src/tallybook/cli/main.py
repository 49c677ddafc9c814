"""The `tallybook` command: one typer app, one module per command group."""

from __future__ import annotations

import logging

import typer

from tallybook import __version__
from tallybook.cli import (  # noqa: F401
    alerts,
    audit,
    billing,
    connect,
    demo,
    exports,
    fx,
    gateway,
    identities,
    imports,
    keys,
    pricing,
    providers,
    report,
    report_analytics,
    report_devtools,
    report_finance,
    report_rates,
    serve,
    sync,
    users,
)
from tallybook.cli.common import err, handle_errors, out, safe_url
from tallybook.config import Settings, get_settings, settings_table
from tallybook.ledger import rollup
from tallybook.ledger.db import open_ledger

app = typer.Typer(
    name="tallybook",
    help="The ledger of your organisation's AI spend: what it costs, who spent it, and how to spend less.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("connect")(connect.connect)
app.add_typer(connect.connections_app, name="connections")
app.command("sync")(sync.sync)
app.add_typer(report.report_app, name="report")
app.add_typer(report_rates.benchmark_app, name="benchmark")
app.add_typer(pricing.pricing_app, name="pricing")
app.add_typer(fx.fx_app, name="fx")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(providers.providers_app, name="providers")
app.command("gateway")(gateway.gateway)
app.command("demo")(demo.demo)
app.add_typer(demo.fakes_app, name="fakes")
# Later command groups add themselves through their module's `register(app)`.
for module in (serve, users, imports, identities, report_finance, exports, audit, alerts, billing):
    module.register(app)
db_app = typer.Typer(help="The ledger database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Create or migrate the ledger to the newest schema (every command also does this itself).

    Example: TALLYBOOK_DATABASE_URL=postgresql+psycopg://tally@db/tally tallybook db upgrade
    """
    settings = get_settings()
    open_ledger(settings.database_url).dispose()
    err.print(f"Ledger at {safe_url(settings.database_url)} is up to date.")


@db_app.command("rebuild-rollups")
@handle_errors
def db_rebuild_rollups() -> None:
    """Recompute the daily rollups that reports read from every daily bucket in the ledger.

    Sync keeps them current by itself; run this after writing records some other way.

    Example: tallybook db rebuild-rollups
    """
    settings = get_settings()
    engine = open_ledger(settings.database_url)
    try:
        with engine.begin() as conn:
            written = rollup.rebuild(conn)
    finally:
        engine.dispose()
    err.print(f"Rebuilt the daily rollups of {safe_url(settings.database_url)}: {written:,} rows.")


@db_app.command("prune")
@handle_errors
def db_prune() -> None:
    """Apply the retention settings to every organisation: old gateway events and stale provider objects go.

    Example: TALLYBOOK_RETENTION_GATEWAY_EVENTS_DAYS=90 tallybook db prune
    """
    for slug, removed in audit.prune_command().items():
        err.print(f"{slug}: " + (", ".join(f"{n:,} {table}" for table, n in removed.items()) or "nothing to prune"))


@app.command("config")
@handle_errors
def show_config() -> None:
    """Show every setting, its environment variable and current value (secrets hidden).

    Example: tallybook config
    """
    current = get_settings().model_dump()
    for row in settings_table():
        name = row.env.removeprefix("TALLYBOOK_").lower()
        secret = not Settings.model_fields[name].repr  # master key, SSO client secret
        value = "(set)" if secret and current.get(name) else current.get(name)
        if name == "database_url":
            value = safe_url(str(value))
        out.print(f"[bold]{row.env}[/] = {value}\n    {row.help}")


@app.command("version")
def version() -> None:
    """Print the version. Example: tallybook version"""
    out.print(__version__)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()
