"""`tallybook providers`: the upstream API keys the gateway forwards with, stored sealed."""

from __future__ import annotations

import os
import sys

import typer

from tallybook import audit
from tallybook.cli.common import Context, Format, FormatOption, OrgOption, emit, err, handle_errors
from tallybook.errors import ConfigError
from tallybook.gateway.credentials import PROVIDERS, list_credentials, remove_credential, save_credential
from tallybook.security.redaction import fingerprint
from tallybook.security.vault import Vault

providers_app = typer.Typer(help="Upstream provider keys for the gateway: add, list, remove.", no_args_is_help=True)


def _provider(name: str) -> str:
    name = name.strip().lower()
    if name not in PROVIDERS:
        raise typer.BadParameter(f"{name!r} is not a gateway provider; use one of {', '.join(PROVIDERS)}.",
                                 param_hint="PROVIDER")
    return name


@providers_app.command("add")
@handle_errors
def add(
    provider: str = typer.Argument(..., help=f"One of: {', '.join(PROVIDERS)}."),
    base_url: str = typer.Option(None, "--base-url", help="Upstream base URL (default: the provider's API)."),
    org: str = OrgOption,
) -> None:
    """Store the API key the gateway uses for a provider, encrypted; adding again replaces it.

    The key is read from OPENAI_API_KEY / ANTHROPIC_API_KEY / COHERE_API_KEY, or asked for without
    echo. Ollama needs no key.

    Example: OPENAI_API_KEY=sk-proj-... tallybook providers add openai
    """
    name = _provider(provider)
    info = PROVIDERS[name]
    secret = None
    if info.env_var is not None:
        secret = os.environ.get(info.env_var, "").strip()
        if not secret:
            if not sys.stdin.isatty():
                raise ConfigError(f"No {info.label} API key: set {info.env_var}, or run this in a terminal to type it.")
            secret = typer.prompt(f"{info.label} API key", hide_input=True).strip()
    url = (base_url or info.base_url).rstrip("/")
    ctx = Context(org)
    vault = Vault.from_settings(ctx.settings)
    with ctx.engine.begin() as conn:
        replaced = save_credential(conn, vault, org_id=ctx.org_id, provider=name, base_url=url, secret=secret)
        audit.record(conn, ctx.org_id, audit.cli_actor(), "provider.replaced" if replaced else "provider.added",
                     "provider", name, {"base_url": url, "key": fingerprint(secret) if secret else None})
    what = f"key {fingerprint(secret)}" if secret else "no key"
    err.print(f"{'Replaced' if replaced else 'Added'} [bold]{name}[/] ({url}) with {what}.", highlight=False)


@providers_app.command("list")
@handle_errors
def list_providers(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """Show the providers the gateway can forward to, with the key's fingerprint (never the key).

    Example: tallybook providers list --format json
    """
    ctx = Context(org)
    with ctx.engine.connect() as conn:
        rows = [{"provider": c.provider, "base_url": c.base_url, "key": c.key_fingerprint, "added_at": c.created_at}
                for c in list_credentials(conn, ctx.org_id)]
    emit(rows, fmt, ["provider", "base_url", "key", "added_at"], title="Gateway providers")


@providers_app.command("remove")
@handle_errors
def remove(provider: str = typer.Argument(..., help="The provider to forget."), org: str = OrgOption) -> None:
    """Forget a provider's stored key; the gateway stops forwarding to it.

    Example: tallybook providers remove cohere
    """
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        if not remove_credential(conn, ctx.org_id, provider.strip().lower()):
            raise ConfigError(f"No provider {provider!r} is stored; see `tallybook providers list`.")
        audit.record(conn, ctx.org_id, audit.cli_actor(), "provider.removed", "provider", provider.strip().lower())
    err.print(f"Removed {provider}.")
