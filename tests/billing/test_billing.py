"""Billing through Stripe, with the official `stripe` SDK pointed at a local fake Stripe that validates
like the real one: each identifier once, a durable queue while Stripe is down, corrections by
cancellation, a preview equal to the priced usage, and the webhook's signature check."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
import stripe
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tallybook.billing.routes import router
from tallybook.config import Settings
from tallybook.fakes.server import RunningServer, serve_in_thread
from tallybook.fakes.stripe_api import StripeFake
from tallybook.ledger import schema as t
from tallybook.ledger import schema_billing as tb
from tallybook.ledger import store
from tallybook.ledger.db import open_ledger
from tests.cli.helpers import ok, run

NANOS = 1_000_000_000
KEY = "sk_test_tallybook_fake"
MARKUP = Decimal("0.20")


@pytest.fixture
def fake() -> Iterator[tuple[StripeFake, RunningServer]]:
    stripe_fake = StripeFake(api_key=KEY)
    server = serve_in_thread(stripe_fake.app())
    yield stripe_fake, server
    server.stop()


@pytest.fixture
def env(cli_env: dict[str, str], fake: tuple[StripeFake, RunningServer], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    extra = {"TALLYBOOK_STRIPE_API_KEY": KEY, "TALLYBOOK_STRIPE_API_BASE": fake[1].url}
    for k, v in extra.items():
        monkeypatch.setenv(k, v)
    return {**cli_env, **extra}


def this_hour() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)


def request(engine: sa.Engine, customer: str | None, at: datetime, *, tokens: int = 1000, cost: str = "0.0123",
            model: str = "gpt-4o") -> None:
    """One metered gateway request in the ledger, as the flusher writes it."""
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        conn.execute(sa.insert(t.usage_events).values(
            event_id=str(uuid.uuid4()), org_id=org, ts=at, customer=customer, provider="openai", model=model,
            endpoint="chat.completions", streamed=False, status=200, outcome="ok", input_tokens=tokens,
            output_tokens=tokens // 4, latency_ms=30, usage_origin="metered",
            list_cost_nanos=int(Decimal(cost) * NANOS), currency="USD"))


def seed(env: dict[str, str], fake: StripeFake) -> sa.Engine:
    """Two mapped customers and one unmapped, over three past hours; a 20 % markup; a cost meter and a token meter."""
    engine = open_ledger(env["TALLYBOOK_DATABASE_URL"])
    base = this_hour() - timedelta(hours=5)
    for hour, customer, n in ((0, "acme", 3), (1, "acme", 2), (1, "globex", 4), (3, "globex", 1), (2, "initech", 2)):
        for i in range(n):
            request(engine, customer, base + timedelta(hours=hour, minutes=5 + i), tokens=1000 + 100 * i,
                    cost=f"0.01{i}7")
    ok("pricing", "set", "--id", "resale", "--provider", "openai", "--model", "*", "--markup", str(MARKUP),
       "--from", "2026-01-01")
    ok("billing", "meters", "add", "llm-cost", "--event-name", "tallybook_llm_cost", "--create")
    ok("billing", "meters", "add", "input", "--event-name", "tallybook_input_tokens", "--measure", "input_tokens",
       "--unit-price", "0.000002", "--create")
    ok("billing", "customers", "map", "--customer", "acme", "--create")
    ok("billing", "customers", "map", "--customer", "globex", "--create")
    assert len(fake.customers) == 2 and len(fake.meters) == 2
    return engine


def priced(engine: sa.Engine, customer: str) -> Decimal:
    """The customer's price re-derived from the ledger rows: list cost x (1 + markup)."""
    with engine.connect() as conn:
        nanos = conn.execute(sa.select(sa.func.sum(t.usage_events.c.list_cost_nanos))
                             .where(t.usage_events.c.customer == customer)).scalar()
    return Decimal(int(nanos)) / NANOS * (1 + MARKUP)


def input_tokens(engine: sa.Engine, customer: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.sum(t.usage_events.c.input_tokens))
                                .where(t.usage_events.c.customer == customer)).scalar())


def stripe_totals(fake: StripeFake, event_name: str) -> dict[str, Decimal]:
    names = {c["id"]: c["name"] for c in fake.customers.values()}
    return {names[cus]: v for (name, cus), v in fake.totals().items() if name == event_name}


def test_sync_sends_each_identifier_once_and_stripe_holds_the_priced_usage(
        env: dict[str, str], fake: tuple[StripeFake, RunningServer]) -> None:
    stripe_fake = fake[0]
    engine = seed(env, stripe_fake)
    first = ok("billing", "sync")
    assert "initech" in first.stderr  # unmapped: named, not billed
    sent = stripe_fake.identifiers_sent()
    assert len(sent) == 2 * 4  # 2 meters x (acme 2 hours + globex 2 hours)
    ok("billing", "sync")
    assert stripe_fake.identifiers_sent() == sent  # a second run sends nothing

    micros = stripe_totals(stripe_fake, "tallybook_llm_cost")
    for customer in ("acme", "globex"):
        assert abs(micros[customer] / 1_000_000 - priced(engine, customer)) < Decimal("0.00001")
    assert stripe_totals(stripe_fake, "tallybook_input_tokens") == {
        "acme": input_tokens(engine, "acme"), "globex": input_tokens(engine, "globex")}
    engine.dispose()


def test_while_stripe_is_down_events_queue_and_drain_later(
        env: dict[str, str], fake: tuple[StripeFake, RunningServer]) -> None:
    stripe_fake = fake[0]
    engine = seed(env, stripe_fake)
    stripe_fake.down = 503
    failed = run("billing", "sync")
    assert failed.exit_code == 1 and "stay queued" in failed.stderr
    assert stripe_fake.events == {}
    status = {r["status"]: r["events"] for r in ok("billing", "status", "--format", "json").json()}
    assert status == {"pending": 8}
    stripe_fake.down = 0
    ok("billing", "sync")
    assert len(stripe_fake.identifiers_sent()) == 8
    assert {r["status"]: r["events"] for r in ok("billing", "status", "--format", "json").json()} == {"sent": 8}
    engine.dispose()


def test_a_changed_hour_is_corrected_by_cancel_and_resend(
        env: dict[str, str], fake: tuple[StripeFake, RunningServer]) -> None:
    stripe_fake = fake[0]
    engine = seed(env, stripe_fake)
    ok("billing", "sync")
    late = this_hour() - timedelta(hours=5) + timedelta(minutes=50)  # a late event in acme's first hour
    request(engine, "acme", late, tokens=5000, cost="0.25")
    ok("billing", "sync")
    assert [a["cancel"]["identifier"] for a in stripe_fake.adjustments] != []
    assert len(stripe_fake.adjustments) == 2  # that hour, on both meters
    micros = stripe_totals(stripe_fake, "tallybook_llm_cost")
    assert abs(micros["acme"] / 1_000_000 - priced(engine, "acme")) < Decimal("0.00001")
    assert stripe_totals(stripe_fake, "tallybook_input_tokens")["acme"] == input_tokens(engine, "acme")
    ok("billing", "sync")
    assert len(stripe_fake.adjustments) == 2  # nothing more to correct
    engine.dispose()


def test_preview_totals_equal_the_priced_usage_to_the_cent(
        env: dict[str, str], fake: tuple[StripeFake, RunningServer]) -> None:
    engine = seed(env, fake[0])
    month = this_hour() - timedelta(hours=5)
    found = ok("billing", "preview", "--customer", "globex", "--period", f"{month:%Y-%m}", "--format", "json").json()
    lines = {line["meter"]: line for line in found["lines"]}
    cost = Decimal(lines["llm-cost"]["amount"])
    assert cost.quantize(Decimal("0.01")) == priced(engine, "globex").quantize(Decimal("0.01"))
    assert lines["input"]["quantity"] == input_tokens(engine, "globex")
    assert Decimal(lines["input"]["amount"]) == input_tokens(engine, "globex") * Decimal("0.000002")
    assert found["stripe_customer_id"].startswith("cus_")
    csv_out = ok("billing", "preview", "--customer", "globex", "--period", f"{month:%Y-%m}", "--format", "csv").stdout
    assert csv_out.splitlines()[0] == "meter,event_name,measure,quantity,unit_price,amount,currency"
    engine.dispose()


def test_the_fake_validates_like_stripe(fake: tuple[StripeFake, RunningServer]) -> None:
    _stripe_fake, server = fake
    client = stripe.StripeClient(KEY, base_addresses={"api": server.url})
    client.v1.billing.meters.create(params={"display_name": "x", "event_name": "tokens",
                                            "default_aggregation": {"formula": "sum"}})
    cus = client.v1.customers.create(params={"name": "acme"}).id
    event = {"event_name": "tokens", "payload": {"stripe_customer_id": cus, "value": "5"}}
    client.v1.billing.meter_events.create(params={**event, "identifier": "a"})
    refusals = [
        ({**event, "identifier": "a"}, "already exists"),
        ({**event, "identifier": "x" * 101}, "identifier"),
        ({**event, "event_name": "e" * 101}, "event_name"),
        ({**event, "timestamp": int(time.time()) - 36 * 86400}, "35 calendar days"),
        ({**event, "timestamp": int(time.time()) + 600}, "35 calendar days"),
        ({**event, "payload": {"stripe_customer_id": "cus_nope", "value": "1"}}, "No such customer"),
    ]
    for params, message in refusals:
        with pytest.raises(stripe.InvalidRequestError, match=message):
            client.v1.billing.meter_events.create(params=params)
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_test_wrong", base_addresses={"api": server.url}).v1.customers.retrieve(cus)


def sign(secret: str, payload: str, at: int | None = None) -> str:
    stamp = str(at or int(time.time()))
    mac = hmac.new(secret.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def test_the_webhook_refuses_a_bad_signature_and_records_invoice_status(database_url: str) -> None:
    secret = "whsec_test_secret"
    app = FastAPI()
    app.include_router(router)
    app.state.engine = open_ledger(database_url)
    app.state.settings = Settings(database_url=database_url, stripe_webhook_secret=secret)
    event = {"id": "evt_1", "object": "event", "type": "invoice.payment_failed", "api_version": "2026-10-28.endive",
             "data": {"object": {"id": "in_1", "object": "invoice", "customer": "cus_1", "amount_due": 1234,
                                 "currency": "usd"}}}
    body = json.dumps(event)
    with TestClient(app) as http:
        bad = http.post("/webhooks/stripe", content=body, headers={"stripe-signature": sign("whsec_wrong", body)})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_signature"
        stale = http.post("/webhooks/stripe", content=body,
                          headers={"stripe-signature": sign(secret, body, int(time.time()) - 3600)})
        assert stale.status_code == 400
        assert http.post("/webhooks/stripe", content=body).status_code == 400
        good = http.post("/webhooks/stripe", content=body, headers={"stripe-signature": sign(secret, body)})
        assert good.status_code == 200 and good.json()["result"] == "invoice in_1 payment_failed"
        paid = {**event, "id": "evt_2", "type": "invoice.paid"}
        paid_body = json.dumps(paid)
        http.post("/webhooks/stripe", content=paid_body, headers={"stripe-signature": sign(secret, paid_body)})
        again = http.post("/webhooks/stripe", content=paid_body, headers={"stripe-signature": sign(secret, paid_body)})
        assert again.json()["result"] == "already recorded evt_2"
    with app.state.engine.connect() as conn:
        rows = conn.execute(sa.select(tb.billing_invoices)).all()
    assert [(r.invoice_id, r.status, r.amount_due) for r in rows] == [("in_1", "paid", 1234)]
    app.state.engine.dispose()


def test_the_dashboard_app_serves_the_stripe_webhook(database_url: str) -> None:
    from tallybook.web.app import create_app
    secret = "whsec_app"
    app = create_app(Settings(database_url=database_url, stripe_webhook_secret=secret,
                              master_key="QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="))
    body = json.dumps({"id": "evt_9", "object": "event", "type": "customer.created", "data": {"object": {}}})
    with TestClient(app) as http:
        assert http.post("/webhooks/stripe", content=body, headers={"stripe-signature": sign("bad", body)}).status_code == 400
        assert http.post("/webhooks/stripe", content=body,
                         headers={"stripe-signature": sign(secret, body)}).json()["result"] == "ignored customer.created"
