"""`tallybook alerts ...` from the command line, against a real ledger and a real local receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import insert

from tallybook.ledger import schema as t
from tallybook.ledger import store
from tallybook.ledger.db import open_ledger
from tests.alerts.receivers import HttpReceiver, start_http_receiver
from tests.cli.helpers import ok, run


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = start_http_receiver()
    yield receiver
    receiver.close()


def test_channels_rules_test_run_and_history(cli_env: dict[str, str], http: HttpReceiver) -> None:
    added = ok("alerts", "channels", "add", "hook", "--kind", "webhook", "--url", http.url + "/hook/SECRETPATH")
    secret = added.stdout.strip()
    assert secret.startswith("whsec_") and "SECRETPATH" not in added.stderr
    listed = ok("alerts", "channels", "list", "--format", "json").json()
    assert listed == [{"name": "hook", "kind": "webhook", "target": f"127.0.0.1:{http.server.server_address[1]}/...PATH"}]
    assert secret not in ok("alerts", "channels", "list").stdout

    refused = run("alerts", "add", "x", "--kind", "budget", "--amount", "10", "--channel", "nope")
    assert refused.exit_code == 2 and "No channel named nope" in refused.stderr

    ok("alerts", "test", "hook")
    assert len(http.received) == 1 and http.received[0].headers["x-tallybook-signature"].startswith("v1=")

    # A stale-sync rule on a connection never synced: fires once, however often we check.
    ok("alerts", "add", "stale", "--kind", "sync_stale", "--amount", "1", "--channel", "hook")
    engine = open_ledger(cli_env["TALLYBOOK_DATABASE_URL"])
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        conn.execute(insert(t.connections).values(
            org_id=org, name="openai", provider="openai", base_url="https://api.openai.com", secret_sealed="tbv1:x",
            key_fingerprint="abc", status="active", created_at=datetime(2026, 1, 1)))
    engine.dispose()
    ok("alerts", "run")
    ok("alerts", "run")
    assert len(http.received) == 2
    rows = ok("alerts", "history", "--format", "json").json()
    assert [(r["rule"], r["channel"], r["status"], r["attempts"]) for r in rows] == [("stale", "hook", "sent", 1)]
    assert ok("alerts", "list", "--format", "json").json()[0]["kind"] == "sync_stale"


def test_erasing_a_customer_leaves_no_trace_in_alert_rules_or_what_they_said(
        cli_env: dict[str, str], http: HttpReceiver) -> None:
    ok("alerts", "channels", "add", "hook", "--kind", "slack", "--url", http.url + "/slack")
    ok("alerts", "add", "acme-budget", "--kind", "budget", "--scope", "customer:Zyxcorp Ltd", "--amount", "1",
       "--channel", "hook")
    engine = open_ledger(cli_env["TALLYBOOK_DATABASE_URL"])
    with engine.begin() as conn:
        org = store.ensure_org(conn, "default")
        conn.execute(insert(t.usage_events).values(
            event_id="e1", org_id=org, ts=datetime.now(), customer="Zyxcorp Ltd", provider="openai", model="gpt-4o",
            endpoint="chat.completions", streamed=False, status=200, outcome="ok", latency_ms=5,
            usage_origin="metered", list_cost_nanos=2_000_000_000, currency="USD"))
    ok("alerts", "run")
    assert "Zyxcorp Ltd" in http.received[0].body.decode()
    ok("erase", "--customer", "Zyxcorp Ltd", "--yes")
    with engine.connect() as conn:
        for table in ("alert_rules", "alert_deliveries", "audit_log"):
            rows = conn.execute(sa.text(f"SELECT * FROM {table}")).all()
            assert rows and not any("Zyxcorp" in str(v) for row in rows for v in row), table
    engine.dispose()
    assert ok("audit", "verify").exit_code == 0
