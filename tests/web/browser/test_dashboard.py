"""The dashboard's acceptance in headless Chromium: sign in, connect a provider and watch its first sync,
the overview's figures are `tallybook report rates`', filter and drill down the spend explorer, a CSV
download adds up to the ledger, a viewer is refused the settings, French, keyboard use, axe-core finds
no WCAG 2.1 AA violation on any page, and screenshots at desktop and phone widths (docs/img/)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from tallybook.fakes.launcher import DEMO_KEYS
from tallybook.ledger import schema as t
from tallybook.web.pages.base import this_month, today
from tests.cli.helpers import ok
from tests.web.browser.conftest import ADMIN, ANALYST, DESKTOP, PHONE, SHOTS, VIEWER, Site, axe_violations

pytestmark = pytest.mark.slow

PAGES = {"overview": "/", "spend": "/spend", "optimise": "/optimise", "benchmark": "/benchmark",
         "reconcile": "/reconcile", "connect": "/connect", "settings": "/settings", "alerts": "/settings/alerts",
         "audit": "/audit?verify=1", "billing": "/billing"}


def cells(page: Any, table: str) -> list[dict[str, str]]:
    """The rows of a dashboard table, as {column: exact value} from each cell's data-value."""
    return page.eval_on_selector_all(
        f'table[data-table="{table}"] tbody tr',
        "rows => rows.map(r => Object.fromEntries([...r.querySelectorAll('td')].map("
        "td => [td.dataset.col, td.dataset.value])))")


def dec(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def test_an_admin_connects_a_provider_and_watches_the_first_sync(open_page: Callable[..., Any], site: Site) -> None:
    page = open_page(ADMIN)
    page.get_by_role("link", name="Connect provider").click()
    page.get_by_label("Provider").select_option("anthropic")
    page.get_by_label("Admin key").fill(DEMO_KEYS["anthropic"])
    page.get_by_label("Days of history to sync").fill("14")
    page.get_by_text("Advanced", exact=True).click()
    page.get_by_label("API base URL").fill(site.cloud.base_url("anthropic"))
    page.get_by_role("button", name="Check the key and connect").click()
    page.wait_for_url("**/connect/runs/**")
    assert "works" in page.get_by_role("status").first.inner_text()
    assert page.locator("[data-permissions] li").count() >= 1
    page.wait_for_selector('[data-state="succeeded"]', timeout=60_000)
    assert "Sync finished" in page.locator("[data-status]").inner_text()
    assert DEMO_KEYS["anthropic"] not in page.content()
    assert axe_violations(page) == []
    page.screenshot(path=str(SHOTS / "dashboard-connect-progress-desktop.png"))
    page.get_by_role("link", name="See the overview").click()
    providers = {r["provider"]: r for r in cells(page, "providers")}
    assert set(providers) == {"openai", "anthropic"}
    assert providers["anthropic"]["last_sync_at"]
    with site.engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(t.usage_records)
                            .where(t.usage_records.c.provider == "anthropic")).scalar()
    assert rows


def test_the_overview_shows_what_report_rates_prints(open_page: Callable[..., Any], site: Site) -> None:
    page = open_page(VIEWER)
    month = this_month().month
    expected = ok("report", "rates", "--month", month, "--group-by", "provider", "--format", "json",
                  env=site.env).json()
    assert expected, "the seeded ledger has this month's usage"
    shown = {r["provider"]: r for r in cells(page, "rates")}
    assert set(shown) == {r["provider"] for r in expected}
    for row in expected:
        got = shown[row["provider"]]
        for column in ("blended_rate_mtok", "input_rate_mtok", "output_rate_mtok", "discount", "list_cost"):
            assert dec(got[column]) == dec(row[column]), (row["provider"], column)
        assert int(got["input_tokens"]) == row["input_tokens"] and int(got["output_tokens"]) == row["output_tokens"]
    total = ok("report", "rates", "--month", month, "--group-by", "", "--format", "json", env=site.env).json()
    card = page.locator('[data-card="blended-USD"] [data-value]').first.get_attribute("data-value")
    assert dec(card) == dec(total[0]["blended_rate_mtok"])
    spend = ok("report", "costs", "--month", month, "--group-by", "provider", "--format", "json", env=site.env).json()
    assert {r["provider"]: dec(r["amount"]) for r in cells(page, "spend")} == {
        r["provider"]: dec(r["amount"]) for r in spend}


def test_the_explorer_filters_and_drills_down(open_page: Callable[..., Any], site: Site) -> None:
    page = open_page(ANALYST)
    page.goto("/spend")
    page.get_by_label("Break down by").select_option("model")
    page.get_by_label("Provider", exact=True).select_option("openai")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**provider=openai**")
    first, last = today() - timedelta(days=29), today()  # the explorer's default: the last 30 days
    expected = ok("report", "costs", "--from", f"{first:%Y-%m-%d}", "--to", f"{last:%Y-%m-%d}", "--provider",
                  "openai", "--group-by", "model", "--format", "json", env=site.env).json()
    shown = cells(page, "breakdown")
    assert {(r["model"] or None, dec(r["amount"])) for r in shown} == {(r["model"], dec(r["amount"])) for r in expected}
    top = shown[0]["model"]
    page.locator('table[data-table="breakdown"] tbody tr').first.locator("td").nth(2).click()  # not the link
    page.wait_for_url("**group=project**")
    assert f"model={top}" in page.url.replace("%2F", "/")
    assert page.get_by_role("link", name=f"Model: {top}").count() == 1


def test_a_csv_download_adds_up_to_the_ledger(open_page: Callable[..., Any], site: Site) -> None:
    page = open_page(ANALYST)
    first, last = today() - timedelta(days=20), today()
    page.goto(f"/spend?from={first:%Y-%m-%d}&to={last:%Y-%m-%d}&group=provider")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV (Breakdown)").click()
    with open(download.value.path(), newline="") as f:
        rows = list(csv.DictReader(f))
    assert download.value.suggested_filename.endswith(".csv")
    c = t.cost_records.c
    with site.engine.connect() as conn:
        ledger = {(p, cur): Decimal(n) / 10**9 for p, cur, n in conn.execute(
            sa.select(c.provider, c.currency, sa.func.sum(c.amount_nanos))
            .where(c.bucket_width == "1d", c.bucket_start >= first, c.bucket_start < last + timedelta(days=1))
            .group_by(c.provider, c.currency))}
    assert {(r["provider"], r["currency"]): Decimal(r["amount"]) for r in rows} == ledger
    assert all(r["origin"] == "reported" for r in rows)


def test_a_viewer_is_refused_the_settings(open_page: Callable[..., Any]) -> None:
    page = open_page(VIEWER)
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").count() == 0
    response = page.goto("/settings")
    assert response.status == 403
    assert "Your role does not allow this page" in page.get_by_role("alert").inner_text()
    assert axe_violations(page) == []
    assert page.get_by_role("link", name="Download CSV").count() == 0


def test_switching_to_french_shows_french(open_page: Callable[..., Any]) -> None:
    page = open_page(ADMIN)
    page.get_by_role("link", name="Français").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.get_by_role("heading", level=1).inner_text() == "Vue d'ensemble"
    nav = page.get_by_role("navigation", name="Navigation principale")
    assert nav.get_by_role("link", name="Explorateur des dépenses").count() == 1
    page.goto("/spend")
    assert page.get_by_role("heading", level=1).inner_text() == "Explorateur des dépenses"
    assert page.get_by_role("button", name="Appliquer").count() == 1
    page.get_by_role("link", name="English").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Spend explorer"


def test_the_keyboard_reaches_the_content_first(open_page: Callable[..., Any]) -> None:
    page = open_page(ADMIN)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto("/spend")
    page.locator('table[data-table="breakdown"] tbody a').first.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**group=model**")


@pytest.mark.parametrize(("width", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_every_page_passes_axe_and_is_photographed(open_page: Callable[..., Any], width: str,
                                                   viewport: dict[str, int]) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[dict[str, Any]]] = {}
    anonymous = open_page(viewport=viewport)
    anonymous.goto("/login")
    found["login"] = axe_violations(anonymous)
    anonymous.screenshot(path=str(SHOTS / f"dashboard-login-{width}.png"))
    page = open_page(ADMIN, viewport=viewport)
    too_wide = {}
    for name, path in PAGES.items():
        page.goto(path)
        found[name] = axe_violations(page)
        # nothing wider than the screen but the tables' own scroll boxes (WCAG 1.4.10 reflow)
        if page.evaluate("document.documentElement.scrollWidth") > viewport["width"]:
            too_wide[name] = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(SHOTS / f"dashboard-{name}-{width}.png"))
    page.goto("/lang?set=fr&next=/")
    found["overview (fr)"] = axe_violations(page)
    assert {k: v for k, v in found.items() if v} == {}
    assert too_wide == {}
