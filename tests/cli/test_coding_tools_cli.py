"""`tallybook connect cursor|claude_code`, `sync` and the reports, end to end against the fakes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from tallybook.fakes.anthropic_admin import AnthropicAdminFake
from tallybook.fakes.cursor_admin import DEMO_KEY, CursorAdminFake
from tallybook.fakes.server import serve_in_thread
from tests.cli.helpers import ok, run
from tests.support import FAKE_NOW

SINCE, UNTIL = "2026-10-20", "2026-11-18"
START, END = datetime(2026, 10, 20), datetime(2026, 11, 19)


@pytest.fixture(scope="module")
def fakes():
    anthropic, cursor = AnthropicAdminFake(now=FAKE_NOW), CursorAdminFake(now=FAKE_NOW)
    with serve_in_thread(anthropic.app) as a, serve_in_thread(cursor.app) as c:
        yield anthropic, cursor, a.url, c.url


@pytest.mark.slow
def test_connect_sync_and_report(cli_env, fakes):
    anthropic, cursor, a_url, c_url = fakes
    ok("connect", "cursor", "--base-url", c_url, env={**cli_env, "CURSOR_ADMIN_KEY": DEMO_KEY})
    ok("connect", "claude_code", "--base-url", a_url,
       env={**cli_env, "ANTHROPIC_ADMIN_KEY": "sk-ant-admin01-demo-0000000000000000"})
    listed = {c["name"]: c for c in ok("connections", "list", "--format", "json", env=cli_env).json()}
    assert {listed["cursor"]["provider"], listed["claude_code"]["provider"]} == {"cursor", "claude_code"}
    assert DEMO_KEY not in str(listed)
    synced = ok("sync", "--since", SINCE, "--until", UNTIL, env=cli_env)
    assert "Synced cursor" in synced.stderr and "Synced claude_code" in synced.stderr

    costs = ok("report", "costs", "--from", SINCE, "--to", UNTIL, "--group-by", "provider", "--format", "json",
               env=cli_env).json()
    cents = sum((m.get("charged_cents", Decimal(0)) for m in cursor.expected(START, END).values()), Decimal(0))
    assert [(r["provider"], Decimal(r["amount"]), r["origin"]) for r in costs] == [("cursor", cents / 100, "reported")]
    estimate = ok("report", "costs", "--from", SINCE, "--to", UNTIL, "--source", "claude_code", "--format", "json",
                  env=cli_env).json()
    expected = anthropic.claude_code.expected(START, END)
    assert sum(Decimal(r["amount"]) for r in estimate) == expected["cost_cents"] / 100
    assert {r["origin"] for r in estimate} == {"estimated"}

    usage = ok("report", "usage", "--from", SINCE, "--to", UNTIL, "--source", "claude_code", "--group-by", "unit",
               "--format", "json", env=cli_env).json()
    sessions = next(r for r in usage if r["unit"] == "sessions")["quantities"]["sessions"]
    assert sessions == expected["sessions"]

    devtools = {r["tool"]: r for r in ok("report", "devtools", "--from", SINCE, "--to", UNTIL, "--format", "json",
                                         env=cli_env).json()}
    assert devtools["claude_code"]["sessions"] == expected["sessions"]
    assert Decimal(devtools["cursor"]["cost"]) == cents / 100


def test_bad_options_get_one_error_line(cli_env):
    result = run("report", "devtools", "--tool", "copilot", env=cli_env)
    assert result.exit_code == 2 and result.stderr.count("Error:") == 1 and "copilot" in result.stderr
    result = run("connect", "cursor", "--base-url", "http://127.0.0.1:9",
                 env={**cli_env, "CURSOR_ADMIN_KEY": "k", "TALLYBOOK_HTTP_RETRIES": "1"})
    assert result.exit_code == 1 and "Cursor" in result.stderr and "Traceback" not in result.stderr
