"""The dashboard in a real browser: Debian's chromium driven by Playwright's Python package.

One session-wide site: a SQLite ledger fed by the real fake OpenAI admin API through `tallybook connect`
and `tallybook sync`, three members (admin, analyst, viewer), and the web app under uvicorn on a free
port in a thread. One browser for the whole session; each test opens its own context (cookies).
Chromium is Debian's (`scripts/ensure-chromium.sh` installs it and axe-core); never `playwright install`.
When chromium cannot be had the browser tests are skipped and the run ends with a loud banner.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tallybook.config import Settings, reset_settings
from tallybook.fakes.launcher import DEMO_KEYS, FakeCloud, start_fakes
from tallybook.fakes.server import RunningServer, serve_in_thread
from tallybook.ledger.db import open_ledger
from tallybook.web.app import create_app
from tallybook.web.auth import add_member, create_first_admin, create_user
from tallybook.web.auth.users import org_id_for
from tallybook.web.pages.base import today
from tests.cli.helpers import ok

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = os.environ.get("TALLYBOOK_CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
# Screenshots go to .cache/screenshots (git-ignored), or to docs/img with `make screenshots`, so a test
# run leaves the working tree clean.
SHOTS = Path(os.environ.get("TALLYBOOK_SCREENSHOT_DIR") or ROOT / ".cache" / "screenshots")
SHOTS.mkdir(parents=True, exist_ok=True)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery staple"
ADMIN, ANALYST, VIEWER = "ada@acme.test", "ali@acme.test", "vic@acme.test"
SYNC_DAYS = 45
_problem: list[str] = []


@dataclass
class Site:
    url: str
    env: dict[str, str]
    cloud: FakeCloud
    engine: sa.Engine
    server: RunningServer


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{root / 'ledger.db'}"
    env = {"TALLYBOOK_DATABASE_URL": url, "TALLYBOOK_MASTER_KEY_FILE": str(root / "master.key"),
           "TALLYBOOK_SYNC_HOURLY_DAYS": "0"}
    saved = {k: os.environ.pop(k, None) for k in ("TALLYBOOK_MASTER_KEY", "TALLYBOOK_ORG", "OPENAI_ADMIN_KEY",
                                                   "ANTHROPIC_ADMIN_KEY")}
    cloud = start_fakes(days=SYNC_DAYS + 30)
    since = f"{today() - timedelta(days=SYNC_DAYS - 1):%Y-%m-%d}"
    ok("connect", "openai", "--base-url", cloud.base_url("openai"), env={**env, "OPENAI_ADMIN_KEY": DEMO_KEYS["openai"]})
    ok("sync", "--since", since, env=env)
    reset_settings()
    settings = Settings(database_url=url, master_key_file=env["TALLYBOOK_MASTER_KEY_FILE"], sync_schedule="off",
                        sync_hourly_days=0)
    engine = open_ledger(url)
    with engine.begin() as conn:
        create_first_admin(conn, ADMIN, PASSWORD, "default")
        org_id = org_id_for(conn, "default")
        for email, role in ((ANALYST, "analyst"), (VIEWER, "viewer")):
            add_member(conn, org_id, create_user(conn, email, PASSWORD), role)
    server = serve_in_thread(create_app(settings, engine=engine))
    try:
        yield Site(server.url, env, cloud, engine, server)
    finally:
        server.stop()
        engine.dispose()
        cloud.stop()
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
        _problem.append(f"{CHROMIUM} not found")
        pytest.skip(f"chromium unavailable at {CHROMIUM}: browser tests skipped (run scripts/ensure-chromium.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_page(browser: Any, site: Site) -> Iterator[Callable[..., Any]]:
    """open_page(email=None, viewport=DESKTOP, lang="en-US") -> a page, signed in as `email` when given."""
    contexts: list[Any] = []

    def make(email: str | None = None, *, viewport: dict[str, int] = DESKTOP, locale: str = "en-US") -> Any:
        context = browser.new_context(base_url=site.url, viewport=viewport, locale=locale, accept_downloads=True)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        if email:
            sign_in(page, email)
        return page

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A and AA violations on the page as it is now."""
    assert AXE.exists(), f"axe-core missing at {AXE}: run scripts/ensure-chromium.sh"
    page.add_script_tag(path=str(AXE))
    return page.evaluate("""async () => {
        const result = await axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
                                              resultTypes: ["violations"]});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + " :: " + n.failureSummary)}));
    }""")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if _problem:
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(f"BROWSER TESTS WERE SKIPPED: {_problem[0]}", red=True, bold=True)
        terminalreporter.write_line("Run `bash scripts/ensure-chromium.sh` (installs Debian's chromium and axe-core).",
                                    red=True, bold=True)
        terminalreporter.write_line(bar, red=True, bold=True)
