"""The Alerts (Settings), Audit log and Billing pages through HTTP (no browser): who may see them, forms with
CSRF that change what the CLI sees, a test send to a real local receiver, secrets shown once, the chain's
verdict, and a billing preview whose CSV equals the CLI's figures."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tallybook.ledger import schema_ops as ops
from tests.alerts.receivers import HttpReceiver, start_http_receiver
from tests.cli.helpers import ok
from tests.web.conftest import form_csrf, signed_in
from tests.web.test_api_ops import ORG, gateway_request


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    found = start_http_receiver()
    yield found
    found.close()


@pytest.mark.parametrize("role, alerts, audit, billing", [("viewer", 403, 403, 403), ("analyst", 403, 200, 200),
                                                          ("admin", 200, 200, 200)])
def test_who_sees_the_pages_and_the_nav_links(client: TestClient, member: Callable[..., int], role: str,
                                              alerts: int, audit: int, billing: int) -> None:
    member(f"{role}@acme.test", "acme", role)
    signed_in(client, f"{role}@acme.test")
    assert client.get("/settings/alerts").status_code == alerts
    assert client.get("/audit").status_code == audit
    assert client.get("/billing").status_code == billing
    home = client.get("/").text
    assert ('href="/audit"' in home) == (audit == 200) and ('href="/billing"' in home) == (billing == 200)


def test_alerts_settings_add_a_channel_and_rule_send_a_test_and_list_deliveries(
        client: TestClient, member: Callable[..., int], receiver: HttpReceiver, cli_env: dict[str, str]) -> None:
    member("admin@ops.test", ORG, "admin")
    signed_in(client, "admin@ops.test")
    assert 'href="/settings/alerts"' in client.get("/settings").text
    url = f"{receiver.url}/hook/secret-path-0123"
    refused = client.post("/settings/alerts/channels", data={"name": "ops", "kind": "webhook", "url": url,
                                                             "csrf_token": "forged"})
    assert refused.status_code == 403
    made = client.post("/settings/alerts/channels", data={"name": "ops", "kind": "webhook", "url": url,
                                                          "csrf_token": form_csrf(client)})
    assert made.status_code == 200
    secret = re.search(r"data-new-secret>([^<]+)<", made.text).group(1)  # type: ignore[union-attr]
    assert secret.startswith("whsec_")
    page = client.get("/settings/alerts").text
    assert "secret-path-0123" not in page and secret not in page and "/...0123" in page
    assert ok("alerts", "channels", "list", "--format", "json", env=cli_env).json() == [
        {"name": "ops", "kind": "webhook", "target": f"127.0.0.1:{receiver.server.server_address[1]}/...0123"}]

    bad = client.post("/settings/alerts/rules", data={"name": "b", "kind": "budget", "channel": "ops",
                                                      "csrf_token": form_csrf(client)})
    assert bad.status_code == 422 and "needs --amount" in bad.text
    added = client.post("/settings/alerts/rules", data={
        "name": "monthly", "kind": "budget", "channel": "ops", "scope": "org", "period": "month", "amount": "250",
        "currency": "USD", "thresholds": "50,80,100", "csrf_token": form_csrf(client)})
    assert added.status_code == 303 and added.headers["location"] == "/settings/alerts?done=rule_added"
    assert [r["name"] for r in ok("alerts", "list", "--format", "json", env=cli_env).json()] == ["monthly"]

    channel_id = re.search(r'/settings/alerts/channels/(\d+)/test', page).group(1)  # type: ignore[union-attr]
    sent = client.post(f"/settings/alerts/channels/{channel_id}/test", data={"csrf_token": form_csrf(client)})
    assert sent.status_code == 303 and len(receiver.received) == 1
    receiver.failures_left = 1
    failed = client.post(f"/settings/alerts/channels/{channel_id}/test", data={"csrf_token": form_csrf(client)})
    assert failed.status_code == 502 and "webhook answered 500" in failed.text

    in_use = client.post(f"/settings/alerts/channels/{channel_id}/remove", data={"csrf_token": form_csrf(client)})
    assert in_use.status_code == 422 and "monthly" in in_use.text
    client.get("/lang", params={"set": "fr", "next": "/settings/alerts"})
    french = client.get("/settings/alerts").text
    assert "Envois récents" in french and "Envoyer un test" in french and "Recent deliveries" not in french


def test_the_audit_log_is_newest_first_filtered_and_shows_a_broken_chain(
        client: TestClient, member: Callable[..., int], engine: sa.Engine) -> None:
    member("admin@ops.test", ORG, "admin")
    signed_in(client, "admin@ops.test")
    for name in ("one", "two"):
        client.post("/settings/alerts/channels", data={"name": name, "kind": "slack",
                                                       "url": f"https://hooks.slack.test/services/{name}-xyz9",
                                                       "csrf_token": form_csrf(client)})
    page = client.get("/audit")
    assert "data-chain" not in page.text and 'name="verify"' in page.text  # the whole chain is read on request
    assert 'data-chain="ok"' in client.get("/audit", params={"verify": "1"}).text
    seqs = [int(s) for s in re.findall(r'data-col="seq" data-value="(\d+)"', page.text)]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 2
    only = client.get("/audit", params={"action": "alert_channel.*", "download": "entries"})
    rows = list(csv.DictReader(io.StringIO(only.text)))
    assert [r["object_id"] for r in rows] == ["two", "one"] and all("xyz9" in r["details"] for r in rows)
    assert client.get("/audit", params={"action": "drop table"}).status_code == 400
    with engine.begin() as conn:
        conn.execute(sa.update(ops.audit_log).where(ops.audit_log.c.seq == min(seqs)).values(action="tampered"))
    broken = client.get("/audit", params={"verify": "1"}).text
    assert f'data-bad-seq="{min(seqs)}"' in broken


def test_the_billing_page_previews_a_customer_with_the_clis_figures(
        client: TestClient, member: Callable[..., int], cli_env: dict[str, str], engine: sa.Engine) -> None:
    member("analyst@ops.test", ORG, "analyst")
    signed_in(client, "analyst@ops.test")
    assert "billing meters add" in client.get("/billing").text  # nothing set up yet: says how
    ok("billing", "meters", "add", "tokens", "--event-name", "tb_input", "--measure", "input_tokens",
       "--unit-price", "0.000002", env=cli_env)
    day = (datetime.now(UTC).replace(tzinfo=None) - timedelta(days=2)).replace(hour=3, minute=0, second=0,
                                                                              microsecond=0)
    gateway_request(engine, "acme", day, 1500, "0.02")
    gateway_request(engine, "acme", day + timedelta(hours=1), 500, "0.01")
    month = f"{day:%Y-%m}"
    page = client.get("/billing", params={"customer": "acme", "month": month})
    assert page.status_code == 200 and 'data-total="USD" data-value="0.004' in page.text
    lines = list(csv.DictReader(io.StringIO(client.get("/billing", params={
        "customer": "acme", "month": month, "download": "lines"}).text)))
    cli = ok("billing", "preview", "--customer", "acme", "--period", month, "--format", "json", env=cli_env).json()
    assert [(r["meter"], int(r["quantity"]), Decimal(r["amount"])) for r in lines] == [
        (c["meter"], c["quantity"], Decimal(c["amount"])) for c in cli["lines"]] == [("tokens", 2000, Decimal("0.004"))]
    assert client.get("/billing", params={"month": "2026-13"}).status_code == 400
