"""`tallybook sync`: pull usage, costs and names from every connection, with a progress bar."""

from __future__ import annotations

from datetime import datetime, timedelta

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tallybook.alerts import rules as alert_rules
from tallybook.alerts.runner import run_once
from tallybook.cli.common import Context, OrgOption, day_range, err, handle_errors, utcnow
from tallybook.cli.connect import secret_context
from tallybook.connectors.registry import PROVIDERS, build_connector, provider_info
from tallybook.connectors.sync import SyncResult, default_window, midnight, sync_connection
from tallybook.errors import ConfigError, ConnectorError
from tallybook.ledger import store
from tallybook.security.vault import Vault
from tallybook.web.jobs import ConnectionBusy, connection_lock


def run_sync(
    ctx: Context, *, provider: str | None = None, connection: str | None = None,
    since: datetime | None = None, until: datetime | None = None, show_progress: bool = True,
) -> list[SyncResult]:
    """Sync every matching connection; the Python entry point behind `tallybook sync` and the demo."""
    if provider:
        provider_info(provider)
    with ctx.engine.connect() as conn:
        rows = store.list_connections(conn, ctx.org_id, provider)
    if connection:
        rows = [r for r in rows if r.name == connection]
    if not rows:
        what = f"{provider} connection" if provider else "connection"
        raise ConfigError(f"No {what} to sync: run `tallybook connect {provider or 'openai'}` first.")
    now = utcnow()
    vault = Vault.from_settings(ctx.settings)
    results: list[SyncResult] = []
    failures: list[ConnectorError] = []
    for row in rows:
        start = since or default_window(ctx.engine, row.id, now=now, first_days=ctx.settings.sync_default_days)
        end = min(until, now) if until else now
        if end <= start:
            raise ConfigError(f"Nothing to sync: {start:%Y-%m-%d} is in the future.")
        hourly_days = ctx.settings.sync_hourly_days
        hourly_from = midnight(now) - timedelta(days=hourly_days - 1) if hourly_days else None
        key = vault.open(row.secret_sealed, context=secret_context(ctx.org_id, row.name))
        connector = build_connector(row.provider, key, base_url=row.base_url, key_hint=row.key_fingerprint,
                                    settings=ctx.settings)
        label = f"{PROVIDERS[row.provider].label} ({row.name}) {start:%Y-%m-%d}..{end - timedelta(seconds=1):%Y-%m-%d}"
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn(),
                          console=err, disable=not show_progress, transient=False) as bar:
                bar_id = bar.add_task(label, total=None, rows=0)
                counted = {"rows": 0}

                def on_task(_task: object, written: int, counted: dict[str, int] = counted,
                            bar_id: TaskID = bar_id) -> None:
                    counted["rows"] += written
                    bar.update(bar_id, advance=1, rows=counted["rows"])

                def on_plan(total: int, bar_id: TaskID = bar_id) -> None:
                    bar.update(bar_id, total=total)

                with connection_lock(ctx.engine, row.id, row.name):  # never beside the web app's sync of it
                    result = sync_connection(
                        ctx.engine, connector, org_id=ctx.org_id, connection_id=row.id, connection_name=row.name,
                        start=start, end=end, hourly_from=hourly_from, now=now,
                        on_plan=on_plan, on_task=on_task)
            results.append(result)
        except ConnectorError as exc:
            failures.append(exc)
        except ConnectionBusy as exc:
            failures.append(ConnectorError(row.provider, str(exc)))
        finally:
            connector.close()
    check_alerts(ctx)  # a failed sync, or what a good one reveals, is alerted on right away
    if failures:
        if len(failures) == 1:
            raise failures[0]
        raise ConnectorError(failures[0].provider, " | ".join(str(f) for f in failures))
    return results


def check_alerts(ctx: Context) -> None:
    """Run the organisation's alert rules once; an alerting problem is reported, never fails the sync."""
    try:
        with ctx.engine.connect() as conn:
            if not alert_rules.rules(conn, ctx.org_id, enabled_only=True):
                return
        result = run_once(ctx.engine, ctx.settings, Vault.from_settings(ctx.settings), org_id=ctx.org_id)
    except Exception as exc:  # noqa: BLE001 - the sync itself succeeded or failed on its own terms
        err.print(f"[yellow]Alert check failed[/]: {exc}")
        return
    for o in result.outcomes:
        err.print(f"Alert {o.rule} -> {o.channel}: {o.status}" + (f" ({o.error})" if o.error else ""))


@handle_errors
def sync(
    provider: str = typer.Option(None, "--provider", "-p", help=f"Only this provider ({', '.join(PROVIDERS)})."),
    connection: str = typer.Option(None, "--connection", help="Only the connection of this name."),
    since: str = typer.Option(None, "--since", help="First UTC day, YYYY-MM-DD (default: last sync, or 30 days)."),
    until: str = typer.Option(None, "--until", help="Last UTC day, inclusive (default: now)."),
    org: str = OrgOption,
) -> None:
    """Fetch usage, costs and names for a window into the ledger.

    Re-syncing a window replaces it (never double-counts); an interrupted run resumes.

    Example: tallybook sync --provider openai --since 2026-10-01 --until 2026-10-31
    """
    start, end = day_range(since, until, since_opt="--since", until_opt="--until")
    ctx = Context(org)
    for r in run_sync(ctx, provider=provider, connection=connection, since=start, until=end):
        resumed = f", {r.skipped} resumed" if r.skipped else ""
        err.print(f"[green]Synced[/] {r.connection}: {r.rows:,} rows in {r.tasks} tasks ({r.pages} pages{resumed}), "
                  f"{r.names} names.")
