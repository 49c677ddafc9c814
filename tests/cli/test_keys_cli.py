"""`tallybook keys` and `tallybook providers` on SQLite and PostgreSQL: secrets shown once, stored never."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from tallybook.config import get_settings, reset_settings
from tallybook.gateway.credentials import credential_context
from tallybook.gateway.keys import KeyCache
from tallybook.gateway.limits import period_start
from tallybook.ledger import budgets
from tallybook.ledger import schema as t
from tallybook.ledger.budgets import NANOS
from tallybook.ledger.db import connect
from tallybook.security.vault import Vault
from tests.cli.helpers import Result, ok, run


def assert_nowhere(secret: str, database: str, outputs: list[Result]) -> None:
    """Neither any command's output nor any byte of the ledger holds `secret`."""
    text = "\n".join(o.stdout + o.stderr for o in outputs)
    assert secret not in text
    if database.startswith("sqlite"):
        path = Path(database.removeprefix("sqlite:///"))
        for file in path.parent.glob(path.name + "*"):
            assert secret.encode() not in file.read_bytes(), file
    else:
        engine = connect(database)
        with engine.connect() as conn:
            for table in t.metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    assert secret not in repr(tuple(row))
        engine.dispose()


def test_a_key_secret_is_printed_once_and_never_stored(cli_env: dict[str, str]) -> None:
    created = ok("keys", "create", "--name", "support-bot", "--customer", "acme", "--feature", "chat",
                 "--budget", "10", "--period", "day", "--rpm", "600", "--tpm", "100000", env=cli_env)
    secret = created.stdout.strip()
    assert secret.startswith("tb-") and len(secret) > 40
    assert "cannot be shown again" in created.stderr
    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    key = KeyCache(engine).authenticate(secret)  # the gateway knows it by its hash
    assert key is not None and (key.budget, key.budget_period, key.rpm, key.customer) == (Decimal(10), "day", 600, "acme")
    with engine.begin() as conn:  # spend 2.50 this period, as the gateway would have settled it
        start = period_start("day", datetime.now().astimezone())
        budgets.settle_and_lease(conn, org_id=key.org_id, scope=f"key:{key.id}", period_start=start,
                                 limit_nanos=10 * NANOS, spend=5 * NANOS // 2)
    engine.dispose()

    listed = [ok("keys", "list", env=cli_env), ok("keys", "list", "--format", "csv", env=cli_env)]
    listed.append(ok("keys", "list", "--format", "json", env=cli_env))
    [row] = listed[-1].json()
    assert row["id"] == key.id and row["hint"] == f"tb-...{secret[-4:]}" and row["status"] == "active"
    assert (row["customer"], row["feature"], row["budget"]) == ("acme", "chat", "10.00 USD/day")
    assert Decimal(row["spent_this_period"]) == Decimal("2.5")
    assert "key_hash" not in row and "secret" not in row
    assert key.id in listed[0].stdout and "tb-..." in listed[0].stdout
    assert_nowhere(secret, cli_env["TALLYBOOK_DATABASE_URL"], listed)

    ok("keys", "update", key.id, "--budget", "25", "--period", "month", "--rpm", "0", env=cli_env)
    [row] = ok("keys", "list", "--format", "json", env=cli_env).json()
    assert row["budget"] == "25.00 USD/month" and row["rpm"] is None and row["tpm"] == 100000
    ok("keys", "update", key.id, "--no-budget", "--name", "support-bot v2", env=cli_env)
    [row] = ok("keys", "list", "--format", "json", env=cli_env).json()
    assert (row["name"], row["budget"], row["spent_this_period"]) == ("support-bot v2", None, None)
    assert run("keys", "update", key.id, "--period", "day", env=cli_env).exit_code == 2  # a period, no budget
    assert run("keys", "update", key.id, env=cli_env).exit_code == 2  # nothing to change

    ok("keys", "revoke", key.id, env=cli_env)
    assert ok("keys", "list", "--format", "json", env=cli_env).json()[0]["status"] == "revoked"
    again = run("keys", "revoke", key.id, env=cli_env)
    assert again.exit_code == 2 and "No active key" in again.stderr
    assert run("keys", "update", key.id, "--rpm", "5", env=cli_env).exit_code == 2


def test_key_options_are_checked(cli_env: dict[str, str]) -> None:
    assert run("keys", "create", "--name", "x", "--budget", "10", env=cli_env).exit_code == 2  # no period
    assert run("keys", "create", "--name", "x", "--budget", "-1", "--period", "day", env=cli_env).exit_code == 2
    assert run("keys", "create", "--name", "x", "--period", "week", env=cli_env).exit_code == 2
    created = ok("keys", "create", "--name", "free", "--format", "json", env=cli_env).json()
    assert created["secret"].startswith("tb-") and created["id"].startswith("vk_")
    [row] = ok("keys", "list", "--format", "json", env=cli_env).json()
    assert row["budget"] is None and row["spent_this_period"] is None


def test_provider_keys_are_sealed_and_listed_by_fingerprint(cli_env: dict[str, str]) -> None:
    planted = "sk-proj-PLANTED" + "Qw3" * 12 + "k9z8"
    outputs = [ok("providers", "add", "openai", env={**cli_env, "OPENAI_API_KEY": planted})]
    outputs.append(ok("providers", "add", "ollama", "--base-url", "http://gpu-box:11434/", env=cli_env))
    missing = run("providers", "add", "anthropic", env={**cli_env, "ANTHROPIC_API_KEY": ""})
    assert missing.exit_code == 2 and "ANTHROPIC_API_KEY" in missing.stderr
    assert run("providers", "add", "mistral", env=cli_env).exit_code == 2
    outputs.append(ok("providers", "list", env=cli_env))
    outputs.append(ok("providers", "list", "--format", "json", env=cli_env))
    rows = {r["provider"]: r for r in outputs[-1].json()}
    assert rows["openai"]["key"] == "sk-proj-...k9z8" and rows["openai"]["base_url"] == "https://api.openai.com"
    assert rows["ollama"]["key"] is None and rows["ollama"]["base_url"] == "http://gpu-box:11434"
    assert "sk-proj-...k9z8" in outputs[0].stderr
    assert_nowhere(planted, cli_env["TALLYBOOK_DATABASE_URL"], outputs)

    reset_settings()
    vault = Vault.from_settings(get_settings())  # the same master key file the CLI used
    engine = connect(cli_env["TALLYBOOK_DATABASE_URL"])
    with engine.connect() as conn:
        row = conn.execute(sa.select(t.provider_credentials).where(t.provider_credentials.c.provider == "openai")).one()
    engine.dispose()
    assert vault.open(row.secret_sealed, context=credential_context(row.org_id, "openai")) == planted

    ok("providers", "remove", "ollama", env=cli_env)
    assert [r["provider"] for r in ok("providers", "list", "--format", "json", env=cli_env).json()] == ["openai"]
    assert run("providers", "remove", "ollama", env=cli_env).exit_code == 2
