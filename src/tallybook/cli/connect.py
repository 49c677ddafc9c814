"""`tallybook connect` and `tallybook connections`: admin keys in, fingerprints out."""

from __future__ import annotations

import os
import sys

import typer

from tallybook import audit
from tallybook.cli.common import Context, Format, FormatOption, OrgOption, emit, err, handle_errors
from tallybook.connectors.registry import PROVIDERS, build_connector, provider_info
from tallybook.errors import ConfigError
from tallybook.ledger import store
from tallybook.security.redaction import fingerprint
from tallybook.security.vault import Vault

connections_app = typer.Typer(help="List and remove provider connections.", no_args_is_help=True)


def secret_context(org_id: int, name: str) -> str:
    return f"org:{org_id}/connection:{name}"


def save_key(ctx: Context, provider: str, key: str, *, base_url: str | None, name: str | None,
             verify: bool = True) -> tuple[str, bool]:
    """Check `key` (unless told not to), seal it and store the connection. Returns (name, rotated)."""
    info = provider_info(provider)
    hint = fingerprint(key)
    url = (base_url or info.base_url).rstrip("/")
    if verify:
        connector = build_connector(provider, key, base_url=url, key_hint=hint, settings=ctx.settings)
        try:
            check = connector.check_key()
        finally:
            connector.close()
        err.print(f"[green]Key {hint} works[/] ({', '.join(check.permissions) or 'usage read'}).")
    vault = Vault.from_settings(ctx.settings)
    conn_name = name or provider
    org_id = ctx.org_id
    with ctx.engine.begin() as conn:
        _, rotated = store.save_connection(
            conn, org_id=org_id, name=conn_name, provider=provider, base_url=url,
            secret_sealed=vault.seal(key, context=secret_context(org_id, conn_name)), key_fingerprint=hint)
        audit.record(conn, org_id, audit.cli_actor(), "connection.rotated" if rotated else "connection.created",
                     "connection", conn_name, {"provider": provider, "base_url": url, "key": hint,
                                               "verified": verify})
    return conn_name, rotated


@handle_errors
def connect(
    provider: str = typer.Argument(..., help=f"One of: {', '.join(PROVIDERS)}."),
    base_url: str = typer.Option(None, "--base-url", help="API base URL (default: the provider's real API)."),
    name: str = typer.Option(None, "--name", help="Connection name (default: the provider's name)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check the key with one API call first."),
    org: str = OrgOption,
) -> None:
    """Store a provider admin key, encrypted, after checking it with one cheap API call.

    The key is read from OPENAI_ADMIN_KEY, ANTHROPIC_ADMIN_KEY (claude_code too) or CURSOR_ADMIN_KEY, else asked.
    Connecting again under the same name rotates the key and keeps all history.

    Example: OPENAI_ADMIN_KEY=sk-admin-... tallybook connect openai
    """
    info = provider_info(provider)
    key = os.environ.get(info.env_var, "").strip()
    if not key:
        if not sys.stdin.isatty():
            raise ConfigError(f"No {info.label} admin key: set {info.env_var}, or run this in a terminal to type it.")
        key = typer.prompt(f"{info.label} admin key ({info.key_help})", hide_input=True).strip()
    ctx = Context(org)
    conn_name, rotated = save_key(ctx, provider, key, base_url=base_url, name=name, verify=verify)
    hint, url = fingerprint(key), (base_url or info.base_url).rstrip("/")
    verb = "Rotated the key of" if rotated else "Connected"
    err.print(f"{verb} [bold]{conn_name}[/] ({info.label}, {url}) with key {hint}. Next: tallybook sync")


@connections_app.command("list")
@handle_errors
def list_connections(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """Show connections with their key fingerprint, status and last sync (never the key).

    Example: tallybook connections list --format json
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        rows = [
            {"name": r.name, "provider": r.provider, "base_url": r.base_url, "key": r.key_fingerprint,
             "status": r.status, "last_sync_at": r.last_sync_at, "last_error": r.last_error}
            for r in store.list_connections(conn, ctx.org_id)
        ]
    emit(rows, fmt, ["name", "provider", "base_url", "key", "status", "last_sync_at", "last_error"],
         title="Connections")


@connections_app.command("remove")
@handle_errors
def remove_connection(name: str = typer.Argument(..., help="Connection name."), org: str = OrgOption) -> None:
    """Forget a connection and its stored key (the usage already synced stays).

    Example: tallybook connections remove openai
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        if not store.delete_connection(conn, ctx.org_id, name):
            raise ConfigError(f"No connection named {name!r}; see `tallybook connections list`.")
        audit.record(conn, ctx.org_id, audit.cli_actor(), "connection.removed", "connection", name)
    err.print(f"Removed connection {name}.")
