"""Dashboard pages through HTTP (no browser): who may see what, the figures are the analytics
functions' own (the same the CLI prints), and every table downloads as CSV with the same figures."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tallybook.analytics.rollups import ReportQuery, cost_report
from tallybook.ledger import store
from tallybook.ledger.records import CostRecord, UsageRecord
from tallybook.web.auth.users import org_id_for
from tallybook.web.pages.base import this_month, today
from tests.web.conftest import signed_in

PAGES = {"/": "Overview", "/spend": "Spend explorer", "/optimise": "Optimisation", "/benchmark": "Benchmark",
         "/reconcile": "Reconciliation", "/settings": "Settings"}
ADMIN_PAGES = ("/settings", "/connect")


def seed(engine: sa.Engine, org: str = "acme") -> int:
    """Ten days of costs and usage up to today on two providers, odd amounts so a dropped row shows."""
    costs, usage = [], []
    for n in range(10):
        day = today() - timedelta(days=n)
        for provider, model, project in (("openai", "gpt-4o", "proj_a"), ("anthropic", "claude-sonnet-4", "ws_b")):
            costs.append(CostRecord(source=f"{provider}_admin", stream="costs", bucket_start=day, bucket_width="1d",
                                    provider=provider, model=model, project=project, amount=Decimal("1.234567891")
                                    * (n + 1), currency="USD", line_item="input", token_type="input"))
            usage.append(UsageRecord(source=f"{provider}_admin", stream="usage", bucket_start=day,
                                     bucket_width="1d", provider=provider, model=model, project=project,
                                     input_tokens=1000 * (n + 1), output_tokens=100 * (n + 1), requests=n + 1))
    with engine.begin() as conn:
        org_id = org_id_for(conn, org, create=True)
        store.upsert_costs(conn, store.cost_rows(org_id, 0, costs))
        store.upsert_usage(conn, store.usage_rows(org_id, 0, usage))
    return org_id


def rows_of(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_a_visitor_is_sent_to_sign_in(client: TestClient, member: Callable[..., int]) -> None:
    member("ada@acme.test")
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")


def test_before_any_user_every_page_leads_to_setup(client: TestClient) -> None:
    assert client.get("/").headers["location"] == "/setup"
    assert client.get("/login").headers["location"] == "/setup"
    page = client.get("/setup")
    assert page.status_code == 200 and 'name="csrf_token"' in page.text and 'action="/setup"' in page.text


def test_an_admin_sees_every_page(client: TestClient, member: Callable[..., int], engine: sa.Engine) -> None:
    member("ada@acme.test")
    seed(engine)
    signed_in(client, "ada@acme.test")
    for path, title in PAGES.items():
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert f"<h1>{title}</h1>" in page.text
        assert 'href="#main"' in page.text and '<html lang="en">' in page.text


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_only_admins_reach_settings_and_connect(client: TestClient, member: Callable[..., int], role: str) -> None:
    from tests.web.conftest import form_csrf

    member("ada@acme.test")
    member("vic@acme.test", role=role)
    signed_in(client, "vic@acme.test")
    for path in ADMIN_PAGES:
        refused = client.get(path)
        assert refused.status_code == 403
        assert "Your role does not allow this page" in refused.text
    assert 'href="/settings"' not in client.get("/").text
    assert client.post("/connect/sync", data={"csrf_token": form_csrf(client)}).status_code == 403


def test_a_viewer_sees_dashboards_but_downloads_nothing(client: TestClient, member: Callable[..., int],
                                                         engine: sa.Engine) -> None:
    member("ada@acme.test")
    member("vic@acme.test", role="viewer")
    seed(engine)
    signed_in(client, "vic@acme.test")
    page = client.get("/spend")
    assert page.status_code == 200 and "Download CSV" not in page.text
    assert client.get("/spend?download=breakdown").status_code == 403
    assert client.get("/spend?format=json").status_code == 403


def test_the_breakdown_csv_has_the_ledger_totals(client: TestClient, member: Callable[..., int],
                                                 engine: sa.Engine) -> None:
    member("ada@acme.test", role="analyst")
    org_id = seed(engine)
    signed_in(client, "ada@acme.test")
    first, last = today() - timedelta(days=9), today()
    query = f"from={first:%Y-%m-%d}&to={last:%Y-%m-%d}"
    rows = rows_of(client.get(f"/spend?{query}&group=provider&download=breakdown"))
    with engine.connect() as conn:
        expected = {r["provider"]: r["amount"] for r in cost_report(conn, ReportQuery(
            org_id=org_id, start=first, end=last + timedelta(days=1), group_by=["provider"]))}
    assert {r["provider"]: Decimal(r["amount"]) for r in rows} == expected
    assert sum(expected.values()) == Decimal("1.234567891") * 55 * 2
    filtered = rows_of(client.get(f"/spend?{query}&group=model&provider=openai&download=breakdown"))
    assert [(r["model"], r["currency"]) for r in filtered] == [("gpt-4o", "USD")]
    trend = rows_of(client.get(f"/spend?{query}&period=day&group=provider&download=trend"))
    assert sum(Decimal(r["amount"]) for r in trend) == sum(expected.values())


def test_a_breakdown_row_drills_down_to_the_next_dimension(client: TestClient, member: Callable[..., int],
                                                           engine: sa.Engine) -> None:
    member("ada@acme.test")
    seed(engine)
    signed_in(client, "ada@acme.test")
    page = client.get("/spend?group=provider")
    assert 'data-href="/spend?period=day&amp;group=model' in page.text
    assert "provider=openai" in page.text
    drilled = client.get("/spend?group=model&provider=openai")
    assert "gpt-4o" in drilled.text and "claude-sonnet-4" not in drilled.text.split('data-table="breakdown"')[1]


def test_the_overview_shows_this_months_rates_and_spend_as_json_too(client: TestClient, member: Callable[..., int],
                                                                    engine: sa.Engine) -> None:
    from tallybook.analytics.pricers import list_pricer
    from tallybook.analytics.rates import rates

    member("ada@acme.test")
    org_id = seed(engine)
    signed_in(client, "ada@acme.test")
    tables = {t["name"]: t for t in client.get("/?format=json").json()["tables"]}
    month = this_month()
    with engine.connect() as conn:
        expected = [r.as_dict() for r in rates(conn, ReportQuery(org_id=org_id, start=month.start, end=month.end,
                                                                 group_by=["provider"]), list_pricer=list_pricer)]
        spend = cost_report(conn, ReportQuery(org_id=org_id, start=month.start, end=month.end, group_by=["provider"]))
    got = {r["provider"]: r for r in tables["rates"]["rows"]}
    for row in expected:
        assert got[row["provider"]]["blended_rate_mtok"] == str(row["blended_rate_mtok"])
        assert got[row["provider"]]["input_tokens"] == row["input_tokens"]
    assert {r["provider"]: r["amount"] for r in tables["spend"]["rows"]} == {
        r["provider"]: str(r["amount"]) for r in spend}


def test_bad_parameters_get_a_page_saying_what_to_fix(client: TestClient, member: Callable[..., int]) -> None:
    member("ada@acme.test")
    signed_in(client, "ada@acme.test")
    assert "YYYY-MM-DD" in client.get("/spend?from=yesterday").text
    assert client.get("/spend?group=colour").status_code == 400
    assert client.get("/optimise?cache_target=7").status_code == 400
    assert client.get("/spend?download=nothing").status_code == 404


def test_the_language_switch_is_remembered(client: TestClient, member: Callable[..., int]) -> None:
    member("ada@acme.test")
    signed_in(client, "ada@acme.test")
    switched = client.get("/lang?set=fr&next=/spend")
    assert switched.status_code == 303 and switched.headers["location"] == "/spend"
    page = client.get("/spend")
    assert '<html lang="fr">' in page.text and "<h1>Explorateur des dépenses</h1>" in page.text
    assert client.get("/lang?set=fr&next=//evil.example").headers["location"] == "/"


def test_settings_add_a_member_and_show_a_new_token_once(client: TestClient, member: Callable[..., int],
                                                         engine: sa.Engine) -> None:
    from tests.web.conftest import form_csrf

    member("ada@acme.test")
    signed_in(client, "ada@acme.test")
    token = form_csrf(client)
    added = client.post("/settings/members", data={"csrf_token": token, "email": "bo@acme.test", "role": "viewer",
                                                   "password": "a long enough password"})
    assert added.status_code == 303
    assert "bo@acme.test" in client.get("/settings").text
    created = client.post("/settings/tokens", data={"csrf_token": token, "name": "finance export"})
    assert created.status_code == 200 and "data-new-token>tbt_" in created.text
    plaintext = created.text.split("data-new-token>")[1].split("<")[0]
    assert plaintext not in client.get("/settings").text
    assert client.post("/settings/tokens", data={"csrf_token": "forged", "name": "x"}).status_code == 403


def test_the_monthly_report_downloads_as_a_pdf_with_the_months_figures(
        client: TestClient, member: Callable[..., int], engine: sa.Engine) -> None:
    from pypdf import PdfReader

    member("ada@acme.test", role="analyst")
    member("vic@acme.test", role="viewer")
    org_id = seed(engine)
    signed_in(client, "ada@acme.test")
    month = this_month()
    response = client.get(f"/report.pdf?month={month.month}")
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages)
    assert f"tallybook monthly report {month.month}" in text
    with engine.connect() as conn:
        spend = cost_report(conn, ReportQuery(org_id=org_id, start=month.start, end=month.end, group_by=["provider"]))
    for row in spend:
        assert f"{row['amount']:,.2f} USD" in text
    assert client.get("/report.pdf?month=2026-13").status_code == 400
    client.cookies.clear()
    signed_in(client, "vic@acme.test")
    assert client.get(f"/report.pdf?month={month.month}").status_code == 403


def test_a_member_of_two_organisations_switches_between_them(client: TestClient, member: Callable[..., int],
                                                             engine: sa.Engine) -> None:
    from tests.web.conftest import form_csrf

    member("ada@acme.test", org="acme", role="viewer")
    member("ada@acme.test", org="globex", role="admin")
    seed(engine, org="acme")
    signed_in(client, "ada@acme.test")
    page = client.get("/")
    assert 'action="/orgs/switch"' in page.text and "globex (admin)" in page.text
    current = page.text.split('id="org-switch"')[1].split("</select>")[0]
    other = "globex" if 'value="acme" selected' in current else "acme"
    switched = client.post("/orgs/switch", data={"org": other, "csrf_token": form_csrf(client), "next": "/spend"})
    assert switched.status_code == 303 and switched.headers["location"] == "/spend"
    assert f'value="{other}" selected' in client.get("/").text


@pytest.fixture(scope="module")
def cloud():  # type: ignore[no-untyped-def]
    from tallybook.fakes.launcher import start_fakes

    fakes = start_fakes(days=20)
    yield fakes
    fakes.stop()


@pytest.mark.slow
def test_connecting_checks_the_key_then_syncs_in_the_background(client: TestClient, member: Callable[..., int],
                                                                cloud, engine: sa.Engine) -> None:  # type: ignore[no-untyped-def]
    import time

    from tallybook.fakes.launcher import DEMO_KEYS
    from tallybook.ledger import schema as t
    from tests.web.conftest import form_csrf

    member("ada@acme.test")
    signed_in(client, "ada@acme.test")
    form = {"csrf_token": form_csrf(client), "provider": "openai", "base_url": cloud.base_url("openai"), "days": "3"}
    refused = client.post("/connect", data={**form, "admin_key": "sk-admin-wrong-key-123456789"})
    assert refused.status_code == 400 and "The key was not accepted" in refused.text
    assert "sk-admin-wrong-key-123456789" not in refused.text
    accepted = client.post("/connect", data={**form, "admin_key": DEMO_KEYS["openai"]})
    assert accepted.status_code == 303
    progress = accepted.headers["location"]
    assert DEMO_KEYS["openai"] not in progress and progress.startswith("/connect/runs/")
    page = client.get(progress)
    assert "usage.read" in page.text and "sk-admin-...0000" in page.text
    deadline = time.monotonic() + 60
    while (status := client.get(progress.split("?")[0] + "/status").json())["finished"] is False:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["state"] == "succeeded" and status["rows"] > 0 and status["done"] == status["total"] > 0
    with engine.connect() as conn:
        stored = conn.execute(sa.select(t.connections.c.secret_sealed, t.connections.c.last_sync_at)).one()
    assert DEMO_KEYS["openai"] not in stored.secret_sealed and stored.last_sync_at is not None
    assert client.get("/connect/runs/999999/status").status_code == 404
    again = client.post("/connect/sync", data={"csrf_token": form["csrf_token"]})
    assert again.status_code == 303 and again.headers["location"].endswith("?sync=all")
    deadline = time.monotonic() + 60
    while (status := client.get(again.headers["location"].split("?")[0] + "/status").json())["finished"] is False:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["state"] == "succeeded"


def test_the_sign_in_page_offers_sso_only_when_it_is_configured(web_settings, engine: sa.Engine,  # type: ignore[no-untyped-def]
                                                                member: Callable[..., int]) -> None:
    from tallybook.web.app import create_app

    member("ada@acme.test")
    plain = TestClient(create_app(web_settings, engine=engine), follow_redirects=False)
    assert "/auth/oidc/login" not in plain.get("/login").text
    sso = TestClient(create_app(web_settings.model_copy(update={"oidc_issuer": "https://id.example.com",
                                                                "oidc_client_id": "x"}), engine=engine),
                     follow_redirects=False)
    page = sso.get("/login?next=/spend&error=sso_unknown_user")
    assert 'href="/auth/oidc/login?next=%2Fspend"' in page.text
    assert "ask an admin to add you" in page.text


def test_the_trend_follows_the_largest_groups_when_there_are_many(client: TestClient, member: Callable[..., int],
                                                                  engine: sa.Engine) -> None:
    from tallybook.web.pages.spend import MAX_SERIES

    member("ada@acme.test", role="analyst")
    costs = [CostRecord(source="openai_admin", stream="costs", bucket_start=today() - timedelta(days=d),
                        bucket_width="1d", provider="openai", model="gpt-4o", project=f"proj_{p:02d}",
                        amount=Decimal(p + 1), currency="USD", line_item="input", token_type="input")
             for p in range(MAX_SERIES + 3) for d in range(3)]
    with engine.begin() as conn:
        store.upsert_costs(conn, store.cost_rows(org_id_for(conn, "acme", create=True), 0, costs))
    signed_in(client, "ada@acme.test")
    page = client.get("/spend?group=project")
    assert f"the {MAX_SERIES} largest" in page.text
    trend = rows_of(client.get("/spend?group=project&download=trend"))
    assert {r["project"] for r in trend} == {f"proj_{p:02d}" for p in range(3, MAX_SERIES + 3)}
    assert len(rows_of(client.get("/spend?group=project&download=breakdown"))) == MAX_SERIES + 3


def test_sync_now_without_a_connection_says_what_to_do(client: TestClient, member: Callable[..., int]) -> None:
    from tests.web.conftest import form_csrf

    member("ada@acme.test")
    signed_in(client, "ada@acme.test")
    refused = client.post("/connect/sync", data={"csrf_token": form_csrf(client)})
    assert refused.status_code == 400 and "connect a provider first" in refused.text
