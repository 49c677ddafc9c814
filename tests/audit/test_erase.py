"""Erasure, retention and closing an organisation: the data goes, the totals and the audit chain stay."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from tallybook.gateway.events import Usage, UsageEvent
from tallybook.gateway.flusher import write_events
from tallybook.ledger import schema as t
from tallybook.ledger import store
from tallybook.ledger.budgets import lease_scope
from tests.cli.helpers import ok, run

CUSTOMER = "cust-zq81-wonka"  # distinctive, so a substring scan cannot hit anything else
OTHER = "globex"
DAY = datetime(2026, 11, 2)


def event(n: int, customer: str, *, hours_ago: float = 0, org_id: int = 1) -> UsageEvent:
    return UsageEvent(
        event_id=f"00000000-0000-7000-8000-{n:012d}", org_id=org_id, ts=DAY + timedelta(hours=n % 20) - timedelta(
            hours=hours_ago), provider="openai", model="gpt-4o-mini", endpoint="chat.completions", streamed=False,
        status=200, outcome="ok", usage=Usage(input_tokens=100 + n, output_tokens=10), latency_ms=50,
        customer=customer, feature="chat", tags={"tenant": customer, "team": "blue"})


def seed(env: dict[str, str]) -> int:
    ok("keys", "create", "--name", "wonka bot", "--customer", CUSTOMER, "--budget", "5", "--period", "day", env=env)
    ok("keys", "create", "--name", "globex bot", "--customer", OTHER, env=env)
    engine = sa.create_engine(env["TALLYBOOK_DATABASE_URL"])
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        write_events(conn, [event(i, CUSTOMER if i % 2 else OTHER, org_id=org) for i in range(20)])
        conn.execute(sa.insert(t.budget_spend).values(org_id=org, scope=f"customer:{CUSTOMER}", period_start=DAY,
                                                      spent_nanos=1000, reserved_nanos=0))
        conn.execute(sa.insert(t.budget_spend).values(org_id=org, scope=lease_scope(f"customer:{CUSTOMER}", DAY),
                                                      period_start=DAY, spent_nanos=0, reserved_nanos=50))
    engine.dispose()
    return org


def gateway_totals(env: dict[str, str]) -> dict[str | None, int]:
    rows = ok("report", "usage", "--source", "gateway", "--from", "2026-11-01", "--to", "2026-11-03",
              "--group-by", "customer", "--format", "json", env=env).json()
    return {r["customer"]: r["input_tokens"] for r in rows}


def mentions(url: str, needle: str) -> list[str]:
    """Every table.column, of every table in the database, whose text contains `needle`."""
    engine = sa.create_engine(url)
    found = []
    try:
        inspector = sa.inspect(engine)
        with engine.connect() as conn:
            for name in inspector.get_table_names():
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                for column in table.c:
                    if isinstance(column.type, sa.String | sa.Text):
                        hits = conn.execute(sa.select(sa.func.count()).select_from(table).where(
                            column.contains(needle, autoescape=True))).scalar()
                        if hits:
                            found.append(f"{name}.{column.name}")
    finally:
        engine.dispose()
    return found


def test_erase_leaves_no_trace_of_the_customer_yet_the_chain_verifies(cli_env: dict[str, str]) -> None:
    seed(cli_env)
    before = gateway_totals(cli_env)
    assert before[CUSTOMER] > 0
    url = cli_env["TALLYBOOK_DATABASE_URL"]
    assert {"usage_events.customer", "usage_events.tags", "usage_records.customer", "virtual_keys.customer",
            "budget_spend.scope", "audit_subjects.value"} <= set(mentions(url, CUSTOMER))

    done = ok("erase", "--customer", CUSTOMER, "--yes", "--format", "json", env=cli_env).json()

    assert mentions(url, CUSTOMER) == []
    lease = lease_scope(f"customer:{CUSTOMER}", DAY)
    assert mentions(url, lease.rsplit(":", 1)[0]) == []  # not even the digest of its budget scope
    assert ok("audit", "verify", "--format", "json", env=cli_env).json()["ok"] is True
    after = gateway_totals(cli_env)
    token = done["anonymous_token"]
    assert CUSTOMER not in after and after[token] == before[CUSTOMER]
    assert after[OTHER] == before[OTHER]  # the other customer is untouched
    entries = ok("audit", "list", "--format", "json", env=cli_env).json()
    erased = [e for e in entries if e["action"] == "customer.erased"]
    assert len(erased) == 1 and erased[0]["object_id"].startswith("erased:psn_")
    created = next(e for e in entries if e["action"] == "key.created" and e["details"]["name"] == "wonka bot")
    assert created["details"]["customer"].startswith("erased:psn_")
    # a later rebuild of the gateway's buckets from the events lands on the same rows: nothing doubles
    engine = sa.create_engine(url)
    from tallybook.gateway.flusher import rebuild
    with engine.begin() as conn:
        rebuild(conn, 1, DAY, DAY + timedelta(days=1))
    engine.dispose()
    assert gateway_totals(cli_env) == after


def test_erase_needs_confirmation_without_a_terminal(cli_env: dict[str, str]) -> None:
    seed(cli_env)
    result = run("erase", "--customer", CUSTOMER, env=cli_env)
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert mentions(cli_env["TALLYBOOK_DATABASE_URL"], CUSTOMER)


def test_prune_applies_retention_and_is_audited(cli_env: dict[str, str]) -> None:
    org = seed(cli_env)
    engine = sa.create_engine(cli_env["TALLYBOOK_DATABASE_URL"])
    with engine.begin() as conn:
        write_events(conn, [event(100, OTHER, hours_ago=24 * 400, org_id=org)])
        store.upsert_names(conn, org, 0, [])
    before = gateway_totals(cli_env)
    ok("db", "prune", env={**cli_env, "TALLYBOOK_RETENTION_GATEWAY_EVENTS_DAYS": "200"})
    with engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(t.usage_events)).scalar()
    engine.dispose()
    assert left == 20  # the 400-day-old event went, the recent ones stayed
    assert gateway_totals(cli_env) == before  # usage records are kept
    pruned = ok("audit", "list", "--action", "retention.pruned", "--format", "json", env=cli_env).json()
    assert pruned[0]["details"]["removed"] == {"usage_events": 1}
    assert ok("audit", "verify", "--format", "json", env=cli_env).json()["ok"] is True


def test_closing_an_organisation_deletes_its_data_and_is_audited(cli_env: dict[str, str]) -> None:
    seed(cli_env)
    ok("keys", "create", "--name", "other org key", "--org", "keepme", env=cli_env)
    ok("orgs", "close", "default", "--yes", env=cli_env)
    engine = sa.create_engine(cli_env["TALLYBOOK_DATABASE_URL"])
    with engine.connect() as conn:
        slugs = conn.execute(sa.select(t.organisations.c.slug)).scalars().all()
        keys = conn.execute(sa.select(t.virtual_keys.c.name)).scalars().all()
        counts = {name: conn.execute(sa.select(sa.func.count()).select_from(getattr(t, name))).scalar()
                  for name in ("usage_events", "usage_records", "budget_spend", "usage_daily")}
    engine.dispose()
    assert slugs == ["keepme"] and keys == ["other org key"]
    assert counts == {"usage_events": 0, "usage_records": 0, "budget_spend": 0, "usage_daily": 0}
    assert mentions(cli_env["TALLYBOOK_DATABASE_URL"], CUSTOMER) == []
    assert ok("audit", "verify", "--format", "json", env=cli_env).json()["ok"] is True
    assert run("orgs", "close", "nosuch", "--yes", env=cli_env).exit_code == 2
