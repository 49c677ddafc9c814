"""`tallybook users ...` and `tallybook tokens ...` against real ledgers; the token then works over HTTP."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends
from fastapi.testclient import TestClient

from tallybook.config import Settings
from tallybook.ledger.schema_ops import audit_log
from tallybook.web.app import create_app
from tallybook.web.auth import Principal, api_principal
from tests.cli.helpers import Result, ok, run


def piped(password: str, *args: str) -> Result:
    """Run the CLI with `password` on stdin (as `--password-stdin` reads it)."""
    from typer.testing import CliRunner

    from tallybook.cli.main import app
    from tallybook.config import reset_settings

    reset_settings()
    result = CliRunner().invoke(app, [*args, "--password-stdin"], input=password + "\n", catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)
from tests.web.conftest import HASH_SHAPE, PASSWORD


def test_users_create_list_set_role_remove(cli_env: dict[str, str]) -> None:
    assert piped(PASSWORD, "users", "create", "--email", "Ada@Example.com", "--org", "acme", "--role", "admin").exit_code == 0
    assert piped(PASSWORD, "users", "create", "--email", "bob@example.com", "--org", "acme", "--role", "viewer").exit_code == 0
    # an existing user joins another organisation without a new password
    ok("users", "create", "--email", "bob@example.com", "--org", "globex", "--role", "admin")
    listed = ok("users", "list", "--org", "acme", "--format", "json")
    assert [(r["email"], r["role"]) for r in listed.json()] == [("ada@example.com", "admin"), ("bob@example.com", "viewer")]
    assert not HASH_SHAPE.search(listed.stdout) and "password" not in listed.stdout
    ok("users", "set-role", "bob@example.com", "analyst", "--org", "acme")
    assert {r["email"]: r["role"] for r in ok("users", "list", "--org", "acme", "-f", "json").json()}[
        "bob@example.com"] == "analyst"
    last_admin = run("users", "set-role", "ada@example.com", "viewer", "--org", "acme")
    assert last_admin.exit_code == 1 and "at least one admin" in last_admin.stderr
    ok("users", "remove", "bob@example.com", "--org", "acme")
    assert [r["email"] for r in ok("users", "list", "--org", "acme", "-f", "json").json()] == ["ada@example.com"]
    assert [r["email"] for r in ok("users", "list", "--org", "globex", "-f", "json").json()] == ["bob@example.com"]
    unknown = run("users", "remove", "nobody@example.com", "--org", "acme")
    assert unknown.exit_code == 2 and "No user nobody@example.com" in unknown.stderr


def test_users_create_refuses_a_short_password(cli_env: dict[str, str]) -> None:
    result = piped("short", "users", "create", "--email", "ada@example.com", "--org", "acme")
    assert result.exit_code == 1 and "at least 10 characters" in result.stderr
    assert ok("users", "list", "--org", "acme", "-f", "json").json() == []


def test_token_shown_once_works_then_revoked_gets_401(cli_env: dict[str, str],
                                                      engine: sa.Engine) -> None:
    assert piped(PASSWORD, "users", "create", "--email", "ada@example.com", "--org", "acme", "--role", "analyst").exit_code == 0
    created = ok("tokens", "create", "--email", "ada@example.com", "--name", "finance sheet", "--org", "acme",
                 "-f", "json").json()
    token = created["token"]
    listed = ok("tokens", "list", "--org", "acme", "-f", "json")
    assert token not in listed.stdout and token[4:] not in listed.stdout
    [row] = listed.json()
    assert (row["id"], row["name"], row["scopes"], row["hint"], row["revoked_at"]) == (
        created["id"], "finance sheet", "read", f"tbt_...{token[-4:]}", None)

    app = create_app(Settings(database_url=cli_env["TALLYBOOK_DATABASE_URL"],
                              master_key_file=cli_env["TALLYBOOK_MASTER_KEY_FILE"]), engine=engine)

    @app.get("/api/v1/_test/whoami", include_in_schema=False)
    def whoami(principal: Annotated[Principal, Depends(api_principal)]) -> dict[str, str]:
        return {"email": principal.email, "role": principal.role}

    client = TestClient(app)
    assert client.get("/api/v1/_test/whoami", headers={"Authorization": f"Bearer {token}"}).json() == {
        "email": "ada@example.com", "role": "analyst"}
    ok("tokens", "revoke", str(created["id"]), "--org", "acme")
    assert client.get("/api/v1/_test/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    missing = run("tokens", "revoke", "999", "--org", "acme")
    assert missing.exit_code == 1 and "No API token 999" in missing.stderr
    with engine.connect() as conn:  # every change is in the audit log, never the token
        actions = [r.action for r in conn.execute(sa.select(audit_log.c.action, audit_log.c.details))]
        details = " ".join(str(r.details) for r in conn.execute(sa.select(audit_log.c.details)))
    assert actions == ["member.added", "token.created", "token.revoked"]
    assert token not in details and token[4:-4] not in details
