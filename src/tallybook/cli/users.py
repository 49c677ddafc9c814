"""Users, organisations, roles and API tokens (`tallybook users ...`, `tallybook tokens ...`)."""

from __future__ import annotations

import json
import sys
from enum import Enum

import typer

from tallybook import audit
from tallybook.cli.common import Context, Format, FormatOption, OrgOption, emit, err, handle_errors
from tallybook.errors import ConfigError
from tallybook.web.auth import (
    add_member,
    create_token,
    create_user,
    list_members,
    list_tokens,
    remove_member,
    revoke_token,
    set_role,
)
from tallybook.web.auth.passwords import check_strength
from tallybook.web.auth.users import find_user_id

users_app = typer.Typer(help="Dashboard users and their role in each organisation.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for the REST API: create (shown once), list, revoke.",
                         no_args_is_help=True)


class RoleChoice(str, Enum):
    admin = "admin"
    analyst = "analyst"
    viewer = "viewer"


class Scope(str, Enum):
    read = "read"
    write = "write"


ROLE_OPTION = typer.Option(RoleChoice.viewer, "--role", help="admin, analyst or viewer.")
ROLE_ARGUMENT = typer.Argument(..., help="admin, analyst or viewer.")
SCOPE_OPTION = typer.Option([Scope.read], "--scope", help="read (default) and/or write; repeatable.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `tallybook` app (called once by cli/main.py)."""
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        raise ConfigError("No password: type it at the prompt, or pipe it with --password-stdin.")
    check_strength(password)
    return password


def _user_id(ctx: Context, email: str) -> int:
    with ctx.engine.connect() as conn:
        user_id = find_user_id(conn, email)
    if user_id is None:
        raise ConfigError(f"No user {email.strip().lower()}: create one with `tallybook users create`.")
    return user_id


@users_app.command("create")
@handle_errors
def users_create(
    email: str = typer.Option(..., "--email", help="The user's email (their sign-in name)."),
    role: RoleChoice = ROLE_OPTION,
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin (scripts)."),
    sso_only: bool = typer.Option(False, "--sso-only", help="No password: the user signs in by SSO only."),
    org: str = OrgOption,
) -> None:
    """Create a dashboard user with a role in an organisation (created if new), or add an existing user to one.

    The password (at least 10 characters) is asked for without echo, or read from stdin;
    only its argon2id hash is stored.

    Example: tallybook users create --email ada@example.com --org acme --role admin
    """
    ctx = Context(org)
    org_id = ctx.org_id  # before any transaction of ours: it may create the organisation
    with ctx.engine.connect() as conn:
        existing = find_user_id(conn, email)
    password = None if sso_only or existing is not None else _read_password(password_stdin)
    actor = audit.cli_actor()
    with ctx.engine.begin() as conn:
        user_id = existing if existing is not None else create_user(conn, email, password)
        add_member(conn, org_id, user_id, role.value, actor=actor)
    what = "Added existing user" if existing is not None else "Created"
    err.print(f"[green]{what}[/] {email.strip().lower()} as {role.value} of {ctx.org_slug}.")


@users_app.command("list")
@handle_errors
def users_list(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """Members of the organisation with their role and last sign-in (never a password or hash).

    Example: tallybook users list --org acme --format json
    """
    ctx = Context(org)
    org_id = ctx.org_id  # before any transaction of ours: it may create the organisation
    with ctx.engine.connect() as conn:
        rows = [{"email": m.email, "role": m.role, "member_since": m.created_at, "last_login_at": m.last_login_at}
                for m in list_members(conn, org_id)]
    emit(rows, fmt, ["email", "role", "member_since", "last_login_at"], title=f"Members of {ctx.org_slug}")


@users_app.command("set-role")
@handle_errors
def users_set_role(
    email: str = typer.Argument(..., help="The member's email."),
    role: RoleChoice = ROLE_ARGUMENT,
    org: str = OrgOption,
) -> None:
    """Change a member's role (the organisation always keeps one admin).

    Example: tallybook users set-role bob@example.com analyst --org acme
    """
    ctx = Context(org)
    org_id = ctx.org_id  # before any transaction of ours: it may create the organisation
    user_id = _user_id(ctx, email)
    with ctx.engine.begin() as conn:
        set_role(conn, org_id, user_id, role.value, actor=audit.cli_actor())
    err.print(f"[green]{email.strip().lower()}[/] is now {role.value} of {ctx.org_slug}.")


@users_app.command("remove")
@handle_errors
def users_remove(email: str = typer.Argument(..., help="The member's email."), org: str = OrgOption) -> None:
    """Take a member out of the organisation: their sessions end and their API tokens there are revoked.

    Example: tallybook users remove bob@example.com --org acme
    """
    ctx = Context(org)
    org_id = ctx.org_id  # before any transaction of ours: it may create the organisation
    user_id = _user_id(ctx, email)
    with ctx.engine.begin() as conn:
        remove_member(conn, org_id, user_id, actor=audit.cli_actor())
    err.print(f"[green]Removed[/] {email.strip().lower()} from {ctx.org_slug}.")


@tokens_app.command("create")
@handle_errors
def tokens_create(
    email: str = typer.Option(..., "--email", help="The member the token acts as."),
    name: str = typer.Option(..., "--name", help="What the token is for, e.g. 'finance sheet'."),
    scope: list[Scope] = SCOPE_OPTION,
    fmt: Format = FormatOption,
    org: str = OrgOption,
) -> None:
    """Create an API token and print it, once: only its hash is stored.

    The token acts with its member's role in the organisation (at most analyst without the write scope).
    It goes to stdout alone (or as `token` with --format json); send it as `Authorization: Bearer <token>`.

    Example: tallybook tokens create --email ada@example.com --name "finance sheet" --org acme
    """
    ctx = Context(org)
    org_id = ctx.org_id  # before any transaction of ours: it may create the organisation
    user_id = _user_id(ctx, email)
    with ctx.engine.begin() as conn:
        token_id, token = create_token(conn, org_id, user_id, name, [s.value for s in scope],
                                       actor=audit.cli_actor())
    if fmt is Format.json:
        sys.stdout.write(json.dumps({"id": token_id, "name": name, "token": token}) + "\n")
    else:
        sys.stdout.write(token + "\n")
    err.print(f"API token {token_id} for {email.strip().lower()} in {ctx.org_slug}: shown once, store it now.")


@tokens_app.command("list")
@handle_errors
def tokens_list(fmt: Format = FormatOption, org: str = OrgOption) -> None:
    """The organisation's API tokens with hint, member, scopes, last use and revocation (never the token).

    Example: tallybook tokens list --org acme --format json
    """
    ctx = Context(org)
    org_id = ctx.org_id  # before any transaction of ours: it may create the organisation
    with ctx.engine.connect() as conn:
        rows = [{"id": k.id, "name": k.name, "email": k.email, "hint": k.hint, "scopes": " ".join(k.scopes),
                 "created_at": k.created_at, "last_used_at": k.last_used_at, "revoked_at": k.revoked_at}
                for k in list_tokens(conn, org_id)]
    emit(rows, fmt, ["id", "name", "email", "hint", "scopes", "created_at", "last_used_at", "revoked_at"],
         title=f"API tokens of {ctx.org_slug}")


@tokens_app.command("revoke")
@handle_errors
def tokens_revoke(token_id: int = typer.Argument(..., help="The token's id (see `tallybook tokens list`)."),
                  org: str = OrgOption) -> None:
    """Revoke an API token: the next request with it gets 401.

    Example: tallybook tokens revoke 3 --org acme
    """
    ctx = Context(org)
    org_id = ctx.org_id  # before any transaction of ours: it may create the organisation
    with ctx.engine.begin() as conn:
        revoke_token(conn, org_id, token_id, actor=audit.cli_actor())
    err.print(f"[green]Revoked[/] API token {token_id} of {ctx.org_slug}.")

