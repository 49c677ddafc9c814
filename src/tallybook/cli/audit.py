"""`tallybook audit ...`, `tallybook erase` and `tallybook orgs close`: the hash-chained audit log,
erasure on request, and closing an organisation."""

from __future__ import annotations

import json
import sys

import typer
from sqlalchemy import select

from tallybook.audit import cli_actor, entries, record
from tallybook.audit.erase import erase_customer
from tallybook.audit.retention import close_org, prune
from tallybook.audit.verify import verify
from tallybook.cli.common import (
    Context,
    Format,
    FormatOption,
    OrgOption,
    day_range,
    emit,
    err,
    handle_errors,
    jsonable,
    out,
)
from tallybook.errors import ConfigError
from tallybook.ledger import schema as t

audit_app = typer.Typer(help="The hash-chained audit log: verify it, list it.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organisations: close one and delete its data.", no_args_is_help=True)


@audit_app.command("verify")
@handle_errors
def verify_command(fmt: Format = FormatOption) -> None:
    """Check every entry's hash and link; name the first entry that was altered, removed or reordered.

    Exit 0 when the chain holds, 1 when it does not. Keep the printed head hash somewhere else: a
    later verify that ends on the same hash proves nothing before it changed.

    Example: tallybook audit verify --format json
    """
    ctx = Context()
    with ctx.engine.connect() as conn:
        verdict = verify(conn)
    if fmt is Format.json:
        sys.stdout.write(json.dumps(verdict.as_dict()) + "\n")
    elif verdict.ok:
        out.print(f"Audit chain OK: {verdict.entries:,} entries, head {verdict.head_hash}")
    if not verdict.ok:
        err.print(f"[bold red]Error:[/] audit chain broken at entry {verdict.bad_seq}: {verdict.problem}. "
                  f"{verdict.entries:,} entries before it verify.", highlight=False)
        raise typer.Exit(1)


@audit_app.command("list")
@handle_errors
def list_command(
    date_from: str = typer.Option(None, "--from", help="First UTC day, YYYY-MM-DD."),
    date_to: str = typer.Option(None, "--to", help="Last UTC day, inclusive."),
    action: str = typer.Option(None, "--action", help="Only this action, e.g. key.revoked or 'connection.*'."),
    limit: int = typer.Option(None, "--limit", min=1, help="Only the newest N entries."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Show the organisation's audit entries, oldest first; erased people show as `erased:psn_...`.

    Example: tallybook audit list --from 2026-11-01 --action 'key.*' --format json
    """
    start, end = day_range(date_from, date_to, since_opt="--from", until_opt="--to")
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        rows = entries(conn, org_id=ctx.org_id, start=start, end=end, action=action, limit=limit)
        record(conn, ctx.org_id, cli_actor(), "audit.read", "audit_log", None,
               {"from": date_from, "to": date_to, "action": action, "entries": len(rows)})
    if fmt is Format.json:
        sys.stdout.write(json.dumps([jsonable(r) for r in rows], indent=2) + "\n")
        return
    for row in rows:
        row["details"] = json.dumps(row["details"], sort_keys=True)
    emit(rows, fmt, ["seq", "ts", "actor", "action", "object_type", "object_id", "details"], title="Audit log")


@handle_errors
def erase(
    customer: str = typer.Option(..., "--customer", help="The customer's identifier, as sent in "
                                 "X-Tallybook-Customer or set on a virtual key."),
    yes: bool = typer.Option(False, "--yes", help="Do it without asking."),
    fmt: Format = FormatOption, org: str = OrgOption,
) -> None:
    """Erase a customer's personal data and usage attribution; the audit chain stays verifiable.

    Usage stays in every total, attributed to an anonymous token instead of the customer. Cannot be undone.

    Example: tallybook erase --customer acme --yes
    """
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError("Erasure cannot be undone: add --yes to confirm.")
        typer.confirm(f"Erase every trace of customer {customer!r}? This cannot be undone", abort=True)
    ctx = Context(org)
    with ctx.engine.begin() as conn:
        done = erase_customer(conn, ctx.org_id, customer, actor=cli_actor())
    if fmt is Format.json:
        sys.stdout.write(json.dumps({"anonymous_token": done.customer_token, "changed": done.changed}) + "\n")
        return
    err.print(f"Erased the customer: {done.total:,} rows changed; their usage now counts under "
              f"{done.customer_token}.", highlight=False)


@orgs_app.command("close")
@handle_errors
def close(slug: str = typer.Argument(..., help="The organisation's slug."),
          yes: bool = typer.Option(False, "--yes", help="Do it without asking."), fmt: Format = FormatOption) -> None:
    """Close an organisation: delete all its data (usage, costs, keys, connections, rules, ...); audited.

    Its audit entries stay, naming nobody. Cannot be undone.

    Example: tallybook orgs close acme --yes
    """
    ctx = Context()
    with ctx.engine.connect() as conn:
        org_id = conn.execute(select(t.organisations.c.id).where(t.organisations.c.slug == slug)).scalar()
    if org_id is None:
        raise ConfigError(f"No organisation {slug!r}.")
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError("Closing an organisation deletes its data: add --yes to confirm.")
        typer.confirm(f"Delete every row of organisation {slug!r}? This cannot be undone", abort=True)
    with ctx.engine.begin() as conn:
        removed = close_org(conn, org_id, actor=cli_actor())
    if fmt is Format.json:
        sys.stdout.write(json.dumps({"organisation": slug, "removed": removed}) + "\n")
        return
    err.print(f"Closed {slug}: {sum(removed.values()):,} rows deleted.", highlight=False)


def prune_command() -> dict[str, dict[str, int]]:
    """`tallybook db prune`'s work for every organisation (the command is in cli/main.py's db group)."""
    ctx = Context()
    s = ctx.settings
    done: dict[str, dict[str, int]] = {}
    with ctx.engine.connect() as conn:
        orgs = conn.execute(select(t.organisations.c.id, t.organisations.c.slug).order_by(t.organisations.c.id)).all()
    for org_id, slug in orgs:
        with ctx.engine.begin() as conn:
            done[slug] = prune(conn, org_id, events_days=s.retention_gateway_events_days,
                               objects_days=s.retention_provider_objects_days, actor=cli_actor())
    return done


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
    app.add_typer(audit_app, name="audit")
    app.command("erase")(erase)
    app.add_typer(orgs_app, name="orgs")
