"""Every change made through the CLI leaves its audit entry, in the same transaction."""

from __future__ import annotations

import sqlalchemy as sa

from tallybook.ledger import schema_ops as ops
from tests.cli.helpers import ok, run


def actions(env: dict[str, str]) -> list[str]:
    return [r["action"] for r in ok("audit", "list", "--format", "json", env=env).json() if r["action"] != "audit.read"]


def test_changes_are_audited(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "OPENAI_ADMIN_KEY": "sk-admin-test-0000000000001234"}
    ok("connect", "openai", "--no-verify", "--base-url", "http://127.0.0.1:9", env=env)
    ok("connect", "openai", "--no-verify", "--base-url", "http://127.0.0.1:9", env=env)
    ok("connections", "remove", "openai", env=env)
    key = ok("keys", "create", "--name", "bot", "--customer", "acme", "--format", "json", env=env).json()
    ok("keys", "update", key["id"], "--rpm", "10", env=env)
    ok("keys", "revoke", key["id"], env=env)
    ok("pricing", "set", "--id", "m", "--markup", "0.2", "--from", "2026-01-01", env=env)
    ok("pricing", "set", "--id", "m", "--markup", "0.2", "--from", "2026-01-01", env=env)  # unchanged: no entry
    ok("providers", "add", "ollama", env=env)
    ok("providers", "remove", "ollama", env=env)
    ok("benchmark", "join", env=env)
    ok("benchmark", "leave", env=env)
    assert actions(env) == [
        "connection.created", "connection.rotated", "connection.removed", "key.created", "key.updated",
        "key.revoked", "pricing_rule.created", "provider.added", "provider.removed", "benchmark.joined",
        "benchmark.left",
    ]
    rows = ok("audit", "list", "--action", "key.created", "--format", "json", env=env).json()
    assert rows[0]["details"]["customer"] == "acme" and rows[0]["object_id"] == key["id"]
    assert key["secret"] not in str(rows)
    assert ok("audit", "verify", "--format", "json", env=env).json()["ok"] is True


def test_a_refused_change_leaves_no_entry(cli_env: dict[str, str]) -> None:
    assert run("keys", "revoke", "vk_doesnotexist", env=cli_env).exit_code != 0
    engine = sa.create_engine(cli_env["TALLYBOOK_DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ops.audit_log)).scalar() == 0
    engine.dispose()
