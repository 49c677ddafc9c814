"""An organisation's ledger written through the one write door, for the API tests that need no fake provider:
usage and costs on a few days, a connection, a sync run and job, a virtual key, a pricing rule, a seat,
an alert channel, rule and failed delivery, and a Stripe billing meter and customer map.

Every name an organisation's data carries starts with its `marker`, so a test can show that one
organisation's answers never contain a trace of another's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from tallybook.alerts import rules as alert_rules
from tallybook.billing import setup as billing
from tallybook.gateway.keys import create_key
from tallybook.ledger import rollup, seats, store
from tallybook.ledger import schema_alerts as ta
from tallybook.ledger.records import CostRecord, UsageRecord
from tallybook.ledger.schema_access import sync_jobs
from tallybook.pricing.rulefile import build_rule
from tallybook.pricing.rules import save_rules
from tallybook.security.vault import Vault

FIRST_DAY = datetime(2026, 10, 1)
DAYS = 5


@dataclass(frozen=True)
class Seeded:
    org_id: int
    marker: str
    connection_id: int
    key_id: str
    key_secret: str
    rule_id: str
    run_id: int
    job_id: int
    admin_key: str
    input_tokens: int  # summed over the window, for the figures the tests check
    output_tokens: int
    cost: Decimal
    channel_id: int = 0  # an alert channel (a webhook whose URL and secret are credentials)
    channel_url: str = ""
    channel_secret: str = ""
    alert_rule_id: int = 0
    customer: str = ""  # mapped to a Stripe customer; a billing meter exists


def seed_org(engine: sa.Engine, org_id: int, marker: str, *, scale: int, vault: Vault) -> Seeded:
    """`DAYS` days from FIRST_DAY of openai usage and cost on a model and project named after `marker`."""
    admin_key = f"sk-admin-{marker}-{'x' * 24}{scale:04d}"
    model, project = f"{marker}-model", f"{marker}-project"
    usage, costs = [], []
    for day in range(DAYS):
        at = FIRST_DAY + timedelta(days=day)
        usage.append(UsageRecord(source="openai_admin", stream="completions", bucket_start=at, bucket_width="1d",
                                 provider="openai", model=model, project=project,
                                 input_tokens=1000 * scale * (day + 1), output_tokens=100 * scale * (day + 1),
                                 requests=10 * scale))
        for token_type, amount in (("input", Decimal("0.25") * scale * (day + 1)),
                                   ("output", Decimal("0.10") * scale * (day + 1))):
            costs.append(CostRecord(source="openai_admin", stream="costs", bucket_start=at, bucket_width="1d",
                                    provider="openai", model=model, project=project, line_item=f"{model}, {token_type}",
                                    token_type=token_type, amount=amount, currency="USD"))
    with engine.begin() as conn:
        connection_id, _ = store.save_connection(
            conn, org_id=org_id, name=f"{marker}-openai", provider="openai", base_url="http://127.0.0.1:9/v1",
            secret_sealed=vault.seal(admin_key, context=f"org:{org_id}/connection:{marker}-openai"),
            key_fingerprint=f"sk-admin-...{admin_key[-4:]}")
        end = FIRST_DAY + timedelta(days=DAYS)
        for stream, records in (("completions", usage), ("costs", costs)):
            store.replace_window(conn, org_id=org_id, connection_id=connection_id, source="openai_admin",
                                 stream=stream, bucket_width="1d", start=FIRST_DAY, end=end,
                                 usage=records if stream == "completions" else (),
                                 costs=records if stream == "costs" else ())
        run_id = store.start_run(conn, org_id=org_id, connection_id=connection_id, provider="openai",
                                 start=FIRST_DAY, end=end, tasks_total=2)
        store.finish_run(conn, run_id, status="succeeded")
        store.mark_connection(conn, connection_id, status="active", error=None, synced=True)
        job_id = int(conn.execute(sa.insert(sync_jobs).values(
            org_id=org_id, connection_id=connection_id, trigger="manual", status="succeeded", created_at=end,
            started_at=end, finished_at=end, heartbeat_at=end)).inserted_primary_key[0])  # type: ignore[index]
        key, secret = create_key(conn, org_id=org_id, name=f"{marker}-key", customer=f"{marker}-customer",
                                 budget=Decimal(100), budget_period="month")
        rule_id = f"{marker}-discount"
        save_rules(conn, org_id, [build_rule(rule_id, {"provider": "openai", "model": f"{marker}-*",
                                                       "discount": "0.10", "effective_from": "2026-01-01"})],
                   source="test")
        seats.set_plan(conn, org_id, seats.SeatPlan("cursor", "business", Decimal(40), "USD", "month"))
        seats.assign(conn, org_id, "cursor", "business", f"{marker}@seat.test", since=datetime(2026, 1, 1),
                     origin="test")  # never active: an idle seat
        rollup.rebuild(conn, org_id)
        channel_url = f"https://hooks.{marker}.test/services/T0/B0/{marker}-{'w' * 20}"
        channel, channel_secret = alert_rules.add_channel(conn, vault, org_id, f"{marker}-hook", "webhook",
                                                          url=channel_url)
        alert_rule = alert_rules.add_rule(conn, org_id, f"{marker}-budget", "budget", channel_names=[channel.name],
                                          scope=f"key:{key.id}", amount="100", thresholds="50,100")
        conn.execute(sa.insert(ta.alert_deliveries).values(
            org_id=org_id, rule_id=alert_rule.id, channel=channel.name, dedup_key="budget:2026-10-01:50",
            subject=f"{marker}-key spent 50 % of its budget", payload="{}", status="failed", attempts=3,
            last_error="webhook answered 500", next_attempt_at=end, created_at=end))
        customer = f"{marker}-customer"
        billing.add_meter(conn, org_id, f"{marker}-cost", f"{marker}_cost", "cost_micros")
        billing.map_customer(conn, org_id, customer, f"cus_{marker}{scale}")
    days = range(1, DAYS + 1)
    assert channel_secret is not None
    return Seeded(org_id, marker, connection_id, key.id, secret, rule_id, run_id, job_id, admin_key,
                  input_tokens=sum(1000 * scale * d for d in days), output_tokens=sum(100 * scale * d for d in days),
                  cost=sum((Decimal("0.35") * scale * d for d in days), Decimal(0)), channel_id=channel.id,
                  channel_url=channel_url, channel_secret=channel_secret, alert_rule_id=alert_rule.id,
                  customer=customer)
