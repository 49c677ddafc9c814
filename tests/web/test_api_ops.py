"""The API's alerts, audit log and billing routes: roles, organisations apart, channel credentials never
returned after creation, test sends to a real local receiver, and the same figures as the CLI's JSON."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
import stripe
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tallybook.fakes.server import RunningServer, serve_in_thread
from tallybook.fakes.stripe_api import StripeFake
from tallybook.ledger import schema as t
from tallybook.ledger import schema_alerts as ta
from tallybook.ledger import schema_ops as ops
from tallybook.ledger import store
from tests.alerts.receivers import HttpReceiver, start_http_receiver
from tests.cli.helpers import ok, run

NANOS = 1_000_000_000
STRIPE_KEY = "sk_test_tallybook_fake"
ORG = "default"  # the CLI's organisation when --org is not given


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    found = start_http_receiver()
    yield found
    found.close()


@pytest.fixture
def people(cli_env: dict[str, str], member: Callable[..., int],
           bearer: Callable[..., dict[str, str]]) -> dict[str, dict[str, str]]:
    """An admin, an analyst and a viewer of the CLI's organisation, and an admin of another."""
    for role in ("admin", "analyst", "viewer"):
        member(f"{role}@ops.test", ORG, role)
    member("admin@other.test", "other", "admin")
    return {role: bearer(f"{role}@ops.test", ORG) for role in ("admin", "analyst", "viewer")} | {
        "other": bearer("admin@other.test", "other")}


def test_channels_keep_their_url_and_secret_and_a_test_reaches_the_receiver(
        client: TestClient, people: dict[str, dict[str, str]], receiver: HttpReceiver, engine: sa.Engine) -> None:
    admin = people["admin"]
    url = f"{receiver.url}/hooks/T0/B0/very-secret-path"
    made = client.post("/api/v1/alerts/channels", headers=admin, json={"name": "ops", "kind": "webhook", "url": url})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert secret.startswith("whsec_") and made.json()["target_hint"].endswith("path"[-4:])
    assert url not in made.text
    given = client.post("/api/v1/alerts/channels", headers=admin,
                        json={"name": "mine", "kind": "webhook", "url": url, "secret": "s" * 20})
    assert given.status_code == 201 and given.json()["secret"] is None  # a secret you gave is not echoed
    again = client.post("/api/v1/alerts/channels", headers=admin, json={"name": "ops", "kind": "slack", "url": url})
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    bad = client.post("/api/v1/alerts/channels", headers=admin, json={"name": "x", "kind": "email", "to": ["nobody"]})
    assert bad.status_code == 422 and "email channel" in bad.json()["error"]["message"]

    channel_id = made.json()["id"]
    sent = client.post(f"/api/v1/alerts/channels/{channel_id}/test", headers=admin)
    assert sent.status_code == 200 and sent.json()["sent"] is True
    assert len(receiver.received) == 1 and receiver.received[0].path == "/hooks/T0/B0/very-secret-path"
    assert "x-tallybook-signature" in receiver.received[0].headers
    receiver.failures_left = 1
    failed = client.post(f"/api/v1/alerts/channels/{channel_id}/test", headers=admin)
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "delivery_failed"
    assert "500" in failed.json()["error"]["message"]

    # Never again: not in any answer, the audit log, nor the ledger's plain text.
    for who in ("admin", "analyst"):
        for path in ("/api/v1/alerts/channels", "/api/v1/alerts/rules", "/api/v1/audit"):
            text = client.get(path, headers=people[who]).text
            assert url not in text and secret not in text and "very-secret-path" not in text, path
    assert [c["name"] for c in client.get("/api/v1/alerts/channels", headers=people["analyst"]).json()[
        "channels"]] == ["mine", "ops"]
    with engine.connect() as conn:
        dumped = " ".join(str(r) for r in conn.execute(sa.select(sa.text("*")).select_from(sa.text("alert_channels"))))
    assert "very-secret-path" not in dumped and secret not in dumped

    # Another organisation's admin sees none of it, and cannot test, remove or use it.
    other = people["other"]
    assert client.get("/api/v1/alerts/channels", headers=other).json() == {"channels": []}
    assert client.post(f"/api/v1/alerts/channels/{channel_id}/test", headers=other).status_code == 404
    assert client.delete(f"/api/v1/alerts/channels/{channel_id}", headers=other).status_code == 404
    refused = client.post("/api/v1/alerts/rules", headers=other, json={"name": "r", "kind": "anomaly",
                                                                       "channels": ["ops"]})
    assert refused.status_code == 422 and "No channel named ops" in refused.json()["error"]["message"]
    assert len(receiver.received) == 1


def test_rules_roles_and_deliveries_equal_the_cli(client: TestClient, people: dict[str, dict[str, str]],
                                                  cli_env: dict[str, str], engine: sa.Engine) -> None:
    admin, analyst, viewer = people["admin"], people["analyst"], people["viewer"]
    channel = {"name": "ops", "kind": "slack", "url": "https://hooks.slack.test/services/T0/B0/abcdefgh1234"}
    assert client.post("/api/v1/alerts/channels", headers=analyst, json=channel).status_code == 403
    channel_id = client.post("/api/v1/alerts/channels", headers=admin, json=channel).json()["id"]
    body = {"name": "monthly", "kind": "budget", "channels": ["ops"], "scope": "customer:acme", "amount": "250",
            "thresholds": [80, 50, 100]}
    assert client.post("/api/v1/alerts/rules", headers=analyst, json=body).status_code == 403
    made = client.post("/api/v1/alerts/rules", headers=admin, json=body)
    assert made.status_code == 201, made.text
    assert (made.json()["amount"], made.json()["thresholds"], made.json()["currency"]) == ("250.00", [50, 80, 100], "USD")
    no_amount = client.post("/api/v1/alerts/rules", headers=admin, json={**body, "name": "b2", "amount": None})
    assert no_amount.status_code == 422 and "needs --amount" in no_amount.json()["error"]["message"]
    assert client.post("/api/v1/alerts/rules", headers=admin, json=body).status_code == 409
    in_use = client.delete(f"/api/v1/alerts/channels/{channel_id}", headers=admin)
    assert in_use.status_code == 409 and "monthly" in in_use.json()["error"]["message"]

    cli_rules = ok("alerts", "list", "--format", "json", env=cli_env).json()
    api_rules = client.get("/api/v1/alerts/rules", headers=analyst).json()["rules"]
    assert [(r["name"], r["scope"], r["amount"], r["thresholds"]) for r in cli_rules] == [
        (r["name"], r["scope"], r["amount"], ",".join(map(str, r["thresholds"]))) for r in api_rules]

    rule_id = made.json()["id"]
    with engine.begin() as conn:
        org_id = conn.execute(sa.select(t.organisations.c.id).where(t.organisations.c.slug == ORG)).scalar_one()
        for i, status in enumerate(("sent", "failed", "pending")):
            conn.execute(sa.insert(ta.alert_deliveries).values(
                org_id=org_id, rule_id=rule_id, channel="ops", dedup_key=f"budget:2026-11-01:{i}",
                subject=f"acme spent {50 + i * 25} %", payload="{}", status=status, attempts=i,
                last_error="Slack answered 500: down" if status == "failed" else None,
                next_attempt_at=datetime(2026, 11, 2), created_at=datetime(2026, 11, 2, i)))
    assert client.get("/api/v1/alerts/deliveries", headers=viewer).status_code == 403
    api = client.get("/api/v1/alerts/deliveries", headers=analyst).json()["deliveries"]
    cli = ok("alerts", "history", "--format", "json", env=cli_env).json()
    assert [d["status"] for d in api] == ["pending", "failed", "sent"]  # newest first
    assert [(d["id"], d["rule"], d["channel"], d["status"], d["attempts"], d["last_error"]) for d in api] == [
        (d["id"], d["rule"], d["channel"], d["status"], d["attempts"], d["last_error"]) for d in cli]
    failed = client.get("/api/v1/alerts/deliveries", headers=admin, params={"status": "failed"}).json()
    assert [d["last_error"] for d in failed["deliveries"]] == ["Slack answered 500: down"]
    assert client.get("/api/v1/alerts/deliveries", headers=people["other"]).json() == {"deliveries": []}

    removed = client.delete(f"/api/v1/alerts/rules/{rule_id}", headers=admin)
    assert removed.status_code == 200 and removed.json()["name"] == "monthly"
    assert client.get("/api/v1/alerts/rules", headers=admin).json() == {"rules": []}
    assert client.delete(f"/api/v1/alerts/channels/{channel_id}", headers=admin).status_code == 200
    actions = [e["action"] for e in client.get("/api/v1/audit", headers=admin).json()["entries"]]
    for action in ("alert_channel.created", "alert_rule.created", "alert_rule.removed", "alert_channel.removed"):
        assert action in actions


def test_audit_log_newest_first_filtered_for_analysts_and_verify_names_a_tampered_entry(
        client: TestClient, people: dict[str, dict[str, str]], cli_env: dict[str, str], engine: sa.Engine) -> None:
    admin, analyst = people["admin"], people["analyst"]
    client.post("/api/v1/alerts/channels", headers=admin,
                json={"name": "ops", "kind": "slack", "url": "https://hooks.slack.test/services/T/B/xyz12345"})
    client.post("/api/v1/keys", headers=admin, json={"name": "bot"})
    assert client.get("/api/v1/audit", headers=people["viewer"]).status_code == 403
    assert client.get("/api/v1/audit/verify", headers=people["viewer"]).status_code == 403

    entries = client.get("/api/v1/audit", headers=analyst).json()["entries"]
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 2
    assert entries[0]["action"] == "key.created" and entries[0]["actor"] == "web:admin@ops.test"
    only = client.get("/api/v1/audit", headers=analyst, params={"action": "alert_channel.*"}).json()["entries"]
    assert [e["action"] for e in only] == ["alert_channel.created"]
    assert only[0]["details"]["kind"] == "slack"
    # Each read is itself recorded; the other organisation's log has none of this.
    reads = client.get("/api/v1/audit", headers=analyst, params={"action": "audit.read"}).json()["entries"]
    assert len(reads) == 2 and reads[0]["details"]["action"] == "alert_channel.*"
    assert "alert_channel" not in client.get("/api/v1/audit", headers=people["other"]).text
    csv = client.get("/api/v1/audit", headers=analyst, params={"format": "csv", "action": "key.created"})
    assert csv.text.splitlines()[0] == "seq,ts,actor,action,object_type,object_id,details"
    assert ",key.created,virtual_key," in csv.text

    api = client.get("/api/v1/audit/verify", headers=analyst).json()
    cli = json.loads(ok("audit", "verify", "--format", "json", env=cli_env).stdout)
    assert api == cli and api["ok"] is True and api["entries"] >= 5
    with engine.begin() as conn:
        conn.execute(sa.update(ops.audit_log).where(ops.audit_log.c.seq == seqs[-1])
                     .values(details='{"kind":"email"}'))
    broken = client.get("/api/v1/audit/verify", headers=analyst).json()
    assert (broken["ok"], broken["bad_seq"]) == (False, seqs[-1]) and "altered" in broken["problem"]
    assert run("audit", "verify", "--format", "json", env=cli_env).exit_code == 1


@pytest.fixture
def stripe_fake() -> Iterator[tuple[StripeFake, RunningServer]]:
    fake = StripeFake(api_key=STRIPE_KEY)
    server = serve_in_thread(fake.app())
    yield fake, server
    server.stop()


def gateway_request(engine: sa.Engine, customer: str, at: datetime, tokens: int, cost: str) -> None:
    """One metered gateway request, as the flusher writes it."""
    with engine.begin() as conn:
        org = store.ensure_org(conn, ORG)
        conn.execute(sa.insert(t.usage_events).values(
            event_id=str(uuid.uuid4()), org_id=org, ts=at, customer=customer, provider="openai", model="gpt-4o",
            endpoint="chat.completions", streamed=False, status=200, outcome="ok", input_tokens=tokens,
            output_tokens=tokens // 4, latency_ms=30, usage_origin="metered",
            list_cost_nanos=int(Decimal(cost) * NANOS), currency="USD"))


def test_billing_maps_queue_and_a_preview_equal_to_the_cli(
        app: FastAPI, client: TestClient, people: dict[str, dict[str, str]], cli_env: dict[str, str],
        engine: sa.Engine, stripe_fake: tuple[StripeFake, RunningServer]) -> None:
    fake, server = stripe_fake
    admin, analyst, viewer = people["admin"], people["analyst"], people["viewer"]
    unset = client.post("/api/v1/billing/customers", headers=admin,
                        json={"customer": "acme", "stripe_customer_id": "cus_nope"})
    assert unset.status_code == 422 and "TALLYBOOK_STRIPE_API_KEY" in unset.json()["error"]["message"]
    app.state.settings = app.state.settings.model_copy(update={"stripe_api_key": STRIPE_KEY,
                                                               "stripe_api_base": server.url})
    made = fake_customer(fake, server.url)
    unknown = client.post("/api/v1/billing/customers", headers=admin,
                          json={"customer": "acme", "stripe_customer_id": "cus_doesnotexist"})
    assert unknown.status_code == 422 and "cus_doesnotexist" in unknown.json()["error"]["message"]
    assert client.post("/api/v1/billing/customers", headers=analyst,
                       json={"customer": "acme", "stripe_customer_id": made}).status_code == 403
    mapped = client.post("/api/v1/billing/customers", headers=admin, json={"customer": "acme", "stripe_customer_id": made})
    assert mapped.status_code == 201, mapped.text
    meter = {"name": "tokens", "event_name": "tb_input", "measure": "input_tokens", "unit_price": "0.000002"}
    assert client.post("/api/v1/billing/meters", headers=admin, json=meter).status_code == 201
    assert client.post("/api/v1/billing/meters", headers=admin,
                       json={"name": "cost", "event_name": "tb_cost"}).json()["unit_price"] == "0.000001"
    ok("pricing", "set", "--id", "resale", "--provider", "openai", "--model", "*", "--markup", "0.2",
       "--from", "2026-01-01", env=cli_env)
    day = (datetime.now(UTC).replace(tzinfo=None) - timedelta(days=2)).replace(hour=0, minute=0, second=0,
                                                                              microsecond=0)
    month = f"{day:%Y-%m}"  # inside Stripe's 35-day window, so the sync sends it
    for hour, (tokens, cost) in enumerate([(1000, "0.0123"), (2500, "0.0311"), (700, "0.0042")]):
        gateway_request(engine, "acme", day + timedelta(hours=hour, minutes=10), tokens, cost)
    gateway_request(engine, "globex", day + timedelta(hours=1, minutes=10), 9999, "0.5")

    assert client.get("/api/v1/billing/customers", headers=analyst).json() == {
        "customers": [{"customer": "acme", "stripe_customer_id": made}]}
    assert client.get("/api/v1/billing/preview", headers=viewer,
                      params={"customer": "acme", "month": month}).status_code == 403
    api = client.get("/api/v1/billing/preview", headers=analyst, params={"customer": "acme", "month": month}).json()
    cli = ok("billing", "preview", "--customer", "acme", "--period", month, "--format", "json", env=cli_env).json()
    assert api["lines"] == cli["lines"] and api["totals"] == cli["totals"]
    assert [{k: v for k, v in u.items() if k != "origin"} for u in api["usage"]] == cli["usage"]
    by_meter = {line["meter"]: line for line in api["lines"]}
    assert by_meter["tokens"]["quantity"] == 4200 and by_meter["tokens"]["amount"] == "0.0084"
    assert Decimal(by_meter["cost"]["amount"]) == (Decimal("0.0476") * Decimal("1.2")).quantize(Decimal("0.000001"))
    assert api["stripe_customer_id"] == made and api["unpriced_requests"] == 0
    csv = client.get("/api/v1/billing/preview", headers=analyst,
                     params={"customer": "acme", "month": month, "format": "csv"})
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("meter,event_name,measure,quantity")
    assert sum(Decimal(line.split(",")[5]) for line in csv.text.splitlines()[1:]) == sum(
        Decimal(v) for v in api["totals"].values())

    ok("billing", "sync", "--from", f"{day:%Y-%m-%d}", "--to", f"{day:%Y-%m-%d}", env={
        **cli_env, "TALLYBOOK_STRIPE_API_KEY": STRIPE_KEY, "TALLYBOOK_STRIPE_API_BASE": server.url})
    queue = client.get("/api/v1/billing/status", headers=analyst).json()["events"]
    assert queue == ok("billing", "status", "--format", "json", env=cli_env).json()
    assert sum(row["events"] for row in queue) > 0
    other = people["other"]
    assert client.get("/api/v1/billing/status", headers=other).json() == {"events": []}
    assert client.delete("/api/v1/billing/customers/acme", headers=other).status_code == 404
    assert client.delete("/api/v1/billing/customers/acme", headers=admin).json()["stripe_customer_id"] == made
    assert client.get("/api/v1/billing/customers", headers=analyst).json() == {"customers": []}


def fake_customer(fake: StripeFake, url: str) -> str:
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": url})
    return str(client.v1.customers.create(params={"name": "Acme"}).id)
