"""Alerts end to end below the CLI: rules over a real ledger, delivered to real local receivers
(an HTTP server for Slack and webhooks, aiosmtpd for email), once per rule, channel and level."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tallybook.alerts import rules as alert_rules
from tallybook.alerts.channels import webhook
from tallybook.alerts.runner import run_once
from tallybook.config import Settings
from tallybook.errors import AlertError
from tallybook.ledger import schema as t
from tallybook.ledger import schema_alerts as ta
from tallybook.ledger import store
from tallybook.ledger.db import open_ledger
from tallybook.security.vault import Vault
from tests.alerts.receivers import HttpReceiver, SmtpReceiver, start_http_receiver, start_smtp_receiver

NOW = datetime(2026, 11, 20, 15, 30)
NANOS = 1_000_000_000


@pytest.fixture
def ledger(database_url: str) -> Iterator[sa.Engine]:
    engine = open_ledger(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = start_http_receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = start_smtp_receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def vault() -> Vault:
    return Vault(os.urandom(32))


def settings_for(database_url: str, smtp: SmtpReceiver | None = None, **extra: object) -> Settings:
    values: dict[str, object] = {"database_url": database_url, "web_base_url": "https://tally.example.com",
                                 "alerts_max_attempts": 3, "http_timeout": 5.0}
    if smtp is not None:
        values.update(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_tls="none", smtp_from="alerts@example.com")
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def spend(engine: sa.Engine, org_id: int, amount: str, *, key: str = "vk_bot", customer: str | None = "acme",
          at: datetime = NOW - timedelta(hours=1)) -> None:
    """One priced gateway request in the ledger, as the gateway's flusher writes it."""
    with engine.begin() as conn:
        conn.execute(sa.insert(t.usage_events).values(
            event_id=str(uuid.uuid4()), org_id=org_id, ts=at, virtual_key=key, customer=customer,
            provider="openai", model="gpt-4o", endpoint="chat.completions", streamed=False, status=200,
            outcome="ok", input_tokens=1000, output_tokens=100, latency_ms=20, usage_origin="metered",
            list_cost_nanos=int(Decimal(amount) * NANOS), currency="USD"))


def setup_org(engine: sa.Engine, vault: Vault, http: HttpReceiver, *, email_to: str | None = None,
              scope: str = "key:vk_bot") -> tuple[int, str]:
    """An organisation with a Slack, a webhook (and maybe an email) channel and a 100 USD monthly budget rule."""
    with engine.begin() as conn:
        org = store.ensure_org(conn, "acme-corp")
        alert_rules.add_channel(conn, vault, org, "ops-slack", "slack", url=http.url + "/slack/T0/B0/XXXX")
        _, secret = alert_rules.add_channel(conn, vault, org, "ops-hook", "webhook", url=http.url + "/hook")
        names = ["ops-slack", "ops-hook"]
        if email_to:
            alert_rules.add_channel(conn, vault, org, "ops-mail", "email", to=[email_to])
            names.append("ops-mail")
        alert_rules.add_rule(conn, org, "bot-budget", "budget", channel_names=names, scope=scope,
                             amount="100", thresholds="50,80,100")
    assert secret is not None
    return org, secret


def by_path(http: HttpReceiver, prefix: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(r.body) for r in http.received if r.path.startswith(prefix)]


def test_a_crossed_budget_reaches_every_channel_once_per_level(
        ledger: sa.Engine, database_url: str, vault: Vault, http: HttpReceiver, smtp: SmtpReceiver) -> None:
    org, secret = setup_org(ledger, vault, http, email_to="oncall@example.com")
    settings = settings_for(database_url, smtp)
    spend(ledger, org, "30")
    assert run_once(ledger, settings, vault, now=NOW).fired == 0
    assert http.received == [] and smtp.mails == []

    spend(ledger, org, "25.50")  # 55.50 of 100: the 50 % level
    result = run_once(ledger, settings, vault, now=NOW)
    assert [o.status for o in result.outcomes] == ["sent"] * 3
    run_once(ledger, settings, vault, now=NOW + timedelta(seconds=30))  # checking again says nothing new
    slack, hooks = by_path(http, "/slack"), by_path(http, "/hook")
    assert len(slack) == 1 and len(hooks) == 1 and len(smtp.mails) == 1
    assert "55.50 USD (metered)" in slack[0]["text"] and "https://tally.example.com/" in slack[0]["text"]
    assert hooks[0]["figures"]["Spent"] == "55.50 USD (metered)" and hooks[0]["kind"] == "budget"
    hook = next(r for r in http.received if r.path == "/hook")
    assert webhook.verify(secret, hook.headers, hook.body)
    assert not webhook.verify("whsec_wrong", hook.headers, hook.body)
    assert smtp.mails[0]["Subject"] == "Budget 50 % reached: key:vk_bot (bot-budget)"
    assert "55.50 USD (metered)" in smtp.mails[0].get_payload()

    spend(ledger, org, "44.00")  # 99.50: past 80 % and at the "spent" level at once -> one alert, 100 %
    run_once(ledger, settings, vault, now=NOW + timedelta(minutes=1))
    slack = by_path(http, "/slack")
    assert len(slack) == 2 and slack[1]["blocks"][0]["text"]["text"].startswith("Budget spent")
    assert len(smtp.mails) == 2


def test_two_processes_checking_at_once_deliver_once(
        ledger: sa.Engine, database_url: str, vault: Vault, http: HttpReceiver) -> None:
    org, _ = setup_org(ledger, vault, http)
    spend(ledger, org, "81")
    settings = settings_for(database_url)
    engines = [open_ledger(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def check(engine: sa.Engine) -> None:
        try:
            barrier.wait()
            run_once(engine, settings, vault, now=NOW)
        except BaseException as e:  # noqa: BLE001 - any failure in the thread is reported below
            errors.append(e)

    threads = [threading.Thread(target=check, args=(e,)) for e in engines]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for e in engines:
        e.dispose()
    assert not errors, errors
    assert len(by_path(http, "/slack")) == 1 and len(by_path(http, "/hook")) == 1
    with ledger.connect() as conn:
        rows = conn.execute(sa.select(ta.alert_deliveries.c.status)).scalars().all()
    assert sorted(rows) == ["sent", "sent"]


def test_a_failing_channel_is_retried_with_backoff_and_its_final_status_recorded(
        ledger: sa.Engine, database_url: str, vault: Vault, http: HttpReceiver) -> None:
    org, _ = setup_org(ledger, vault, http)
    spend(ledger, org, "60")
    settings = settings_for(database_url)  # 3 attempts
    http.failures_left = 2  # the first two POSTs (Slack's and the webhook's first tries) get 500
    first = run_once(ledger, settings, vault, now=NOW)
    assert sorted(o.status for o in first.outcomes) == ["pending", "pending"]
    assert all("500" in (o.error or "") for o in first.outcomes)
    assert run_once(ledger, settings, vault, now=NOW + timedelta(seconds=10)).outcomes == []  # backing off
    second = run_once(ledger, settings, vault, now=NOW + timedelta(seconds=31))
    assert sorted(o.status for o in second.outcomes) == ["sent", "sent"]
    assert len(by_path(http, "/slack")) == 1 and len(by_path(http, "/hook")) == 1

    http.close()  # now the receiver is gone for good: three tries, then failed
    spend(ledger, org, "25")  # 85 %: a new level
    later = NOW + timedelta(minutes=5)
    statuses = [sorted(o.status for o in run_once(ledger, settings, vault, now=later + timedelta(seconds=s)).outcomes)
                for s in (0, 31, 92)]
    assert statuses == [["pending", "pending"], ["pending", "pending"], ["failed", "failed"]]
    with ledger.connect() as conn:
        failed = conn.execute(sa.select(ta.alert_deliveries).where(ta.alert_deliveries.c.status == "failed")).all()
    assert len(failed) == 2 and all(r.attempts == 3 and "unreachable" in r.last_error for r in failed)


def test_channel_secrets_are_sealed_and_only_hinted(ledger: sa.Engine, vault: Vault, http: HttpReceiver) -> None:
    org, secret = setup_org(ledger, vault, http)
    with ledger.connect() as conn:
        stored = [tuple(str(v) for v in row) for row in conn.execute(sa.select(ta.alert_channels))]
        hints = {c.name: c.target_hint for c in alert_rules.channels(conn, None, org).values()}
    assert not any("/slack/T0/B0/XXXX" in v or secret in v for row in stored for v in row)
    assert hints["ops-slack"] == f"127.0.0.1:{http.server.server_address[1]}/...XXXX"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "budget", "amount": None}, "needs --amount"),
    ({"kind": "budget", "amount": "-5"}, "positive number"),
    ({"kind": "budget", "amount": "10", "thresholds": "50,abc"}, "percents"),
    ({"kind": "budget", "amount": "10", "scope": "team"}, "--scope"),
    ({"kind": "budget", "amount": "10", "channel_names": ["nope"]}, "No channel named nope"),
    ({"kind": "sparkles", "amount": "10"}, "rule kind"),
])
def test_bad_rules_are_refused_with_the_reason(ledger: sa.Engine, vault: Vault, http: HttpReceiver,
                                                kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    setup_org(ledger, vault, http)
    args = {"channel_names": ["ops-slack"], **kwargs}
    with ledger.begin() as conn, pytest.raises(AlertError, match=message):
        alert_rules.add_rule(conn, 1, "bad", **args)  # type: ignore[arg-type]


def test_failed_syncs_and_refused_keys_alert_once(ledger: sa.Engine, database_url: str, vault: Vault,
                                                   http: HttpReceiver) -> None:
    with ledger.begin() as conn:
        org = store.ensure_org(conn, "acme-corp")
        alert_rules.add_channel(conn, vault, org, "ops-slack", "slack", url=http.url + "/slack")
        alert_rules.add_rule(conn, org, "syncs", "sync_failed", channel_names=["ops-slack"])
        alert_rules.add_rule(conn, org, "keys", "key_failing", channel_names=["ops-slack"])
        conn.execute(sa.insert(t.connections).values(
            id=7, org_id=org, name="openai", provider="openai", base_url="https://api.openai.com",
            secret_sealed="tbv1:x", key_fingerprint="abc", status="failing", created_at=NOW - timedelta(days=3),
            last_error="openai refused the admin key (401): run `tallybook connect openai` with a valid key"))
        conn.execute(sa.insert(t.sync_runs).values(
            org_id=org, connection_id=7, provider="openai", window_start=NOW - timedelta(days=1), window_end=NOW,
            status="failed", started_at=datetime.now() + timedelta(seconds=1), error="401 Unauthorized"))
    settings = settings_for(database_url)
    run_once(ledger, settings, vault, now=datetime.now() + timedelta(minutes=1))
    run_once(ledger, settings, vault, now=datetime.now() + timedelta(minutes=2))
    subjects = sorted(m["blocks"][0]["text"]["text"] for m in by_path(http, "/slack"))
    assert subjects == ["Provider key refused: openai (openai)", "Sync failed: openai (openai)"]


def test_a_team_budget_counts_the_spend_allocated_to_the_team(ledger: sa.Engine, database_url: str, vault: Vault,
                                                              http: HttpReceiver) -> None:
    from tallybook.analytics.allocation import allocate, charges
    from tests.finance.seed import seed

    org = seed(ledger)  # three months of API costs and seats, an identity map with teams research and platform
    october, late_october = (datetime(2026, 10, 1), datetime(2026, 11, 1)), datetime(2026, 10, 31, 23)
    with ledger.connect() as conn:
        research = next(s.amount for s in allocate(charges(conn, org, *october, "USD"), "team") if s.name == "research")
    with ledger.begin() as conn:
        alert_rules.add_channel(conn, vault, org, "ops", "slack", url=http.url + "/slack")
        alert_rules.add_rule(conn, org, "research", "budget", channel_names=["ops"], scope="team:research",
                             amount=str((research / Decimal("0.9")).quantize(Decimal("0.01"))), thresholds="80,100")
    run_once(ledger, settings_for(database_url), vault, now=late_october)
    [said] = by_path(http, "/slack")
    assert said["blocks"][0]["text"]["text"] == "Budget 80 % reached: team:research (research)"
    assert f"{research.quantize(Decimal('0.01'))} USD" in said["text"]


def test_the_monthly_finance_report_is_emailed_once_with_its_pdf(
        ledger: sa.Engine, database_url: str, vault: Vault, http: HttpReceiver, smtp: SmtpReceiver) -> None:
    from io import BytesIO

    from pypdf import PdfReader

    from tallybook.analytics.finance import finance_report, parse_period
    from tests.finance.seed import seed

    org = seed(ledger)
    with ledger.begin() as conn:
        alert_rules.add_channel(conn, vault, org, "finance", "email", to=["cfo@example.com"])
        alert_rules.add_channel(conn, vault, org, "ops", "slack", url=http.url + "/slack")
        alert_rules.add_rule(conn, org, "monthly", "monthly_report", channel_names=["finance", "ops"])
        total = finance_report(conn, org, parse_period("2026-10")).total
    settings = settings_for(database_url, smtp)
    for minutes in (0, 1, 60):  # the first check of November sends October's report; later ones nothing
        run_once(ledger, settings, vault, now=datetime(2026, 11, 1, 0, 5) + timedelta(minutes=minutes))
    [mail] = smtp.mails
    assert mail["Subject"] == "Finance report 2026-10"
    [pdf] = [part for part in mail.iter_attachments()]
    assert pdf.get_filename() == "tallybook-finance-default-2026-10.pdf"
    text = "".join(page.extract_text() for page in PdfReader(BytesIO(pdf.get_payload(decode=True))).pages)
    assert f"total {total.quantize(Decimal('0.01'))} USD" in text
    [said] = by_path(http, "/slack")
    assert f"{total.quantize(Decimal('0.01'))} USD" in said["text"]


@pytest.mark.parametrize(("rpm", "spent_alert"), [(None, True), (600, False)])
def test_a_budget_refusal_by_the_gateway_counts_as_spent_unless_a_rate_limit_could_explain_it(
        ledger: sa.Engine, database_url: str, vault: Vault, http: HttpReceiver, rpm: int | None,
        spent_alert: bool) -> None:
    org, _ = setup_org(ledger, vault, http)
    with ledger.begin() as conn:
        conn.execute(sa.insert(t.virtual_keys).values(id="vk_bot", org_id=org, name="bot", key_hash="h" * 64,
                                                      key_hint="tb-...abcd", budget="100", budget_period="month",
                                                      rpm=rpm, created_at=NOW - timedelta(days=1)))
    spend(ledger, org, "91")  # 91 %: the next request's upper bound no longer fits
    with ledger.begin() as conn:
        conn.execute(sa.insert(t.usage_events).values(
            event_id=str(uuid.uuid4()), org_id=org, ts=NOW - timedelta(minutes=5), virtual_key="vk_bot",
            provider="openai", model="gpt-4o", endpoint="chat.completions", streamed=False, status=429,
            outcome="rejected", latency_ms=1, usage_origin="metered", currency="USD"))
    run_once(ledger, settings_for(database_url), vault, now=NOW)
    subjects = [m["blocks"][0]["text"]["text"] for m in by_path(http, "/slack")]
    assert subjects == (["Budget spent: key:vk_bot (bot-budget)"] if spent_alert
                        else ["Budget 80 % reached: key:vk_bot (bot-budget)"])
